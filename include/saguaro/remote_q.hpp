#pragma once
// q rows that stay with a draft in another process until the target uses them (docs/algorithm.md §2:
// probability rows cross only for sampled requests and only for the speculation that is used).
//
// A draft behind a wire sends its tree's entries as tokens only; it keeps each sampled entry's q rows.
// When the target's cache lookup hits such an entry, the wire asks the draft for that one entry's q
// rows at once, and they travel while the target runs the next verification forward, which needs them
// only after the forward. A RemoteQ is that one answer: the target waits on it (bounded) just before
// the verification kernel. If the answer does not come (the link failed, the draft no longer had the
// rows), the speculation is verified as a deterministic proposal instead, which is exact for any
// proposal drawn independently of the target's randomness (docs/algorithm.md §3), only less likely
// to be accepted.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "saguaro/speculation_cache.hpp"

namespace saguaro {

class RemoteQ {
 public:
  // The answer arrived: n * vocab q values (empty = the draft had no such entry: a failure).
  void fulfil(std::vector<float> q);
  void fail();  // no answer will come
  // Waits up to `timeout` for the answer; true with the rows moved into *out, false when failed or late.
  bool wait(std::chrono::microseconds timeout, std::vector<float>* out);

 private:
  enum class State { kPending, kReady, kFailed };
  std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kPending;
  std::vector<float> q_;
};

// The target's view of a transport whose draft keeps sampled entries' q rows (TargetWire). lookup:
// the entry's tokens, and a RemoteQ for its q rows, requested from the draft now; false = a miss.
class RemoteEntries {
 public:
  virtual ~RemoteEntries() = default;
  virtual bool lookup_remote(uint64_t generation, const CacheKey& key, std::vector<int32_t>* tokens,
                             std::shared_ptr<RemoteQ>* q) = 0;
};

}  // namespace saguaro
