#pragma once
// A speculation x1..xn for one sequence and the exact q rows its tokens were sampled from.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace saguaro {

enum class SpeculationSource { kNone, kChain, kCache, kJitBackup, kFastBackup };

struct Speculation {
  std::vector<int32_t> tokens;  // x1..xn
  // n * vocab processed draft rows; empty when the row is greedy or the proposal deterministic
  std::vector<float> q;
  bool deterministic = false;   // q = one-hot(x) (fast backup)
  SpeculationSource source = SpeculationSource::kNone;

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  void truncate(int32_t n, int64_t vocab);
  bool from_backup() const { return source == SpeculationSource::kJitBackup || source == SpeculationSource::kFastBackup; }
};

}  // namespace saguaro
