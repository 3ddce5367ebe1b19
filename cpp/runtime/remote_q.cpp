#include "saguaro/remote_q.hpp"

#include <utility>

namespace saguaro {

void RemoteQ::fulfil(std::vector<float> q) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kPending) return;
    if (q.empty()) {
      state_ = State::kFailed;
    } else {
      q_ = std::move(q);
      state_ = State::kReady;
    }
  }
  cv_.notify_all();
}

void RemoteQ::fail() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kPending) return;
    state_ = State::kFailed;
  }
  cv_.notify_all();
}

bool RemoteQ::wait(std::chrono::microseconds timeout, std::vector<float>* out) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return state_ != State::kPending; });
  if (state_ != State::kReady) return false;
  *out = std::move(q_);
  state_ = State::kFailed;  // the rows are taken: a second wait has nothing
  return true;
}

}  // namespace saguaro
