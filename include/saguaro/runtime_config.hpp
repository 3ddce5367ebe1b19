#pragma once
// How the runtime speculates: the one definition of the speculation settings and their defaults.
// Python binds this struct once (saguaro._core.RuntimeConfig); saguaro.SpeculationConfig takes its
// defaults from it and converts to it, and validate() below is the one validator.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "saguaro/fanout_schedule.hpp"

namespace saguaro {

enum class Mode { kAr, kSd, kSsd };
enum class BackupKind { kJit, kFast, kAuto };
// What the target does when it looks up the cache before the draft's tree for the round is done.
enum class CachePolicy { kWait, kPartial, kMiss };

struct RuntimeConfig {
  Mode mode = Mode::kSsd;
  // K = 2 with the fan-out budget M = 4 (FanoutConfig): the planner's choice for the default pair with a
  // bf16 draft on the reference CPU (bench/results/quick-greedy-b1-tiles-full-2026-11-24); other
  // devices and draft kinds get their planned shape from saguaro.planned_defaults.
  int32_t k = 2;
  FanoutConfig fanout;
  // Saguaro constant C in [0, 1], forced to 1 in sd (no cache to aim at). A double so the value a user
  // sets round-trips through Python unchanged; the kernels take it as float.
  double saguaro_c = 1.0;
  // kAuto: jit below a measured critical batch size, fast from it on, and from a batch of two on no
  // speculation at all in rounds where plain decoding measures faster, as for a lone request's first
  // rounds right after such load (speculation_governor.hpp).
  BackupKind backup = BackupKind::kAuto;
  int64_t backup_critical_batch = 0;   // 0: computed from measured hit rate and latencies
  CachePolicy cache_policy = CachePolicy::kWait;
  bool strict = false;                 // draft failure → requests fail instead of finishing autoregressively
  std::vector<int> target_cores;       // pin the target worker (empty: not pinned)
  std::vector<int> draft_cores;
  // Intra-op threads of each worker's model library; applied by the worker's thread_init hook (the
  // Python binding sets torch's threads), recorded here so the config carries every setting.
  int32_t target_threads = 1;
  int32_t draft_threads = 1;
  std::function<void()> target_thread_init;  // run first on the target worker (e.g. set torch threads)
  std::function<void()> draft_thread_init;
  // Sets the target worker's intra-op threads for its next forward (the Python binding sets torch's
  // threads; empty: never changed after target_thread_init). In ssd the target worker lends itself the
  // draft's threads while the in-process draft has no work (target_worker.hpp, forward threads).
  std::function<void(int32_t)> set_target_threads;
  // ONLY FOR TESTS: the draft hands the verifier q (before the Saguaro adjustment) instead of the q~
  // its tokens were sampled from — the exactness bug the sampling tests must detect when C < 1.
  bool test_plant_unadjusted_q = false;
};

Mode parse_mode(const std::string& s);
BackupKind parse_backup(const std::string& s);
CachePolicy parse_cache_policy(const std::string& s);
FanoutKind parse_fanout_kind(const std::string& s);
const char* mode_name(Mode m);
const char* backup_name(BackupKind b);
const char* cache_policy_name(CachePolicy p);
const char* fanout_kind_name(FanoutKind k);
// std::invalid_argument naming the field, the allowed values and the value given.
void validate(const RuntimeConfig& config);

}  // namespace saguaro
