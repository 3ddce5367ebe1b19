#pragma once
// A speculation x1..xn for one sequence and the exact q rows its tokens were sampled from.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace saguaro {

class RemoteQ;

enum class SpeculationSource { kNone, kChain, kCache, kJitBackup, kFastBackup };

struct Speculation {
  std::vector<int32_t> tokens;  // x1..xn
  // n * vocab processed draft rows; empty when the row is greedy or the proposal deterministic
  std::vector<float> q;
  bool deterministic = false;   // q = one-hot(x) (fast backup)
  // A cache hit whose q rows are still with a remote draft (remote_q.hpp): q is filled in just before
  // the verification kernel, or the speculation becomes deterministic when they do not come.
  std::shared_ptr<RemoteQ> remote_q;
  SpeculationSource source = SpeculationSource::kNone;

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  void truncate(int32_t n, int64_t vocab);
  bool from_backup() const { return source == SpeculationSource::kJitBackup || source == SpeculationSource::kFastBackup; }
};

}  // namespace saguaro
