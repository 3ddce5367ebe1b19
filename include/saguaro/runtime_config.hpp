#pragma once
// How the runtime speculates: the C++ form of saguaro.config.SpeculationConfig.
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
  int32_t k = 4;
  FanoutConfig fanout;
  float saguaro_c = 1.f;               // forced to 1 in sd (no cache to aim at)
  BackupKind backup = BackupKind::kAuto;
  int64_t backup_critical_batch = 0;   // 0: computed from measured hit rate and latencies
  CachePolicy cache_policy = CachePolicy::kWait;
  bool strict = false;                 // draft failure → requests fail instead of finishing autoregressively
  std::vector<int> target_cores;       // pin the target worker (empty: not pinned)
  std::vector<int> draft_cores;
  std::function<void()> target_thread_init;  // run first on the target worker (e.g. set torch threads)
  std::function<void()> draft_thread_init;
  // ONLY FOR TESTS: the draft hands the verifier q (before the Saguaro adjustment) instead of the q~
  // its tokens were sampled from — the exactness bug the sampling tests must detect when C < 1.
  bool test_plant_unadjusted_q = false;
};

Mode parse_mode(const std::string& s);
BackupKind parse_backup(const std::string& s);
CachePolicy parse_cache_policy(const std::string& s);
FanoutKind parse_fanout_kind(const std::string& s);
const char* mode_name(Mode m);
void validate(const RuntimeConfig& config);  // std::invalid_argument naming the field

}  // namespace saguaro
