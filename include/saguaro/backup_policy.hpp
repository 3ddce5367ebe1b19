#pragma once
// Which backup speculator covers a cache miss (docs/algorithm.md §3): the neural "jit" backup below
// a critical batch size, the fast (n-gram) backup from it on. With hit rate h per sequence a batch
// of B waits for a jit backup with probability 1 - h^B, so per sequence and unit of time
//   jit : (h·E_hit + (1-h)·E_jit) / (V + (1 - h^B)·T_jit)
//   fast: (h·E_hit + (1-h)·E_fast) / V
// with E_* the tokens a round commits for a speculation of that source, V the verification time
// and T_jit the jit backup's latency, all measured live (exponential moving averages).
#include <cstdint>

#include "saguaro/runtime_config.hpp"
#include "saguaro/speculation.hpp"

namespace saguaro {

class BackupPolicy {
 public:
  BackupPolicy(BackupKind kind, int64_t fixed_critical_batch, int32_t k);

  BackupKind choose(int64_t batch_size) const;  // kJit or kFast
  int64_t critical_batch() const;               // smallest B where fast wins (kMaxBatch + 1: never)

  void observe_lookup(bool hit);
  void observe_verify(double seconds);
  void observe_jit(double seconds);
  void observe_committed(SpeculationSource source, int32_t committed);

  static constexpr int64_t kMaxBatch = 1024;

 private:
  BackupKind kind_;
  int64_t fixed_;
  double hit_ = 0.5, verify_s_ = 1.0, jit_s_ = 0.5, e_hit_, e_jit_, e_fast_ = 1.0;
  bool seen_[6] = {false, false, false, false, false, false};
};

}  // namespace saguaro
