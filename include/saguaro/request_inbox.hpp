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
  std::vector<Submission> take_submissions();
  std::vector<int64_t> take_cancels();

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::vector<Submission> submissions_;
  std::vector<int64_t> cancels_;
};

}  // namespace saguaro
