#include "saguaro/request_inbox.hpp"

#include <stdexcept>

namespace saguaro {

void RequestInbox::submit(int64_t id, std::vector<int32_t> prompt, RequestParams params) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) throw std::runtime_error("the runtime is closed; create a new one to submit requests");
    submissions_.push_back(Submission{id, std::move(prompt), std::move(params), Clock::now()});
  }
  cv_.notify_all();
}

void RequestInbox::cancel(int64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_all();
}

void RequestInbox::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
}

bool RequestInbox::closing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closing_;
}

void RequestInbox::wait(std::chrono::microseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return closing_ || !submissions_.empty() || !cancels_.empty(); });
}

RequestInbox::Intake RequestInbox::take() {
  std::lock_guard<std::mutex> lock(mu_);
  Intake out;
  out.submissions.swap(submissions_);
  out.cancels.swap(cancels_);
  return out;
}

}  // namespace saguaro
