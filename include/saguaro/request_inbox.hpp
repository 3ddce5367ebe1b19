#pragma once
// Submissions, cancellations and the close request, handed from any thread to the target worker.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "saguaro/request.hpp"
#include "saguaro/sequence_state.hpp"

namespace saguaro {

struct Submission {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  RequestParams params;
  Clock::time_point submitted;
};

class RequestInbox {
 public:
  // Throws std::runtime_error once closed.
  void submit(int64_t id, std::vector<int32_t> prompt, RequestParams params);
  void cancel(int64_t id);
  void close();
  bool closing() const;
  // Target side: wait until something arrives (or timeout / closing).
  void wait(std::chrono::microseconds timeout);
  // Everything that arrived since the last take, under one lock: a cancel taken here always finds its
  // submission either admitted earlier or in the same take (taken apart, a cancel sent right after its
  // submit could be applied before the submission was admitted, and be lost).
  struct Intake {
    std::vector<Submission> submissions;
    std::vector<int64_t> cancels;
  };
  Intake take();

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::vector<Submission> submissions_;
  std::vector<int64_t> cancels_;
};

}  // namespace saguaro
