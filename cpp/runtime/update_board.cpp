#include "saguaro/update_board.hpp"

#include <stdexcept>
#include <string>

namespace saguaro {

void UpdateBoard::open(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  boxes_[id];
}

void UpdateBoard::push_tokens(int64_t id, const std::vector<int32_t>& tokens) {
  if (tokens.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) return;
    auto& t = it->second.pending.tokens;
    t.insert(t.end(), tokens.begin(), tokens.end());
  }
  cv_.notify_all();
}

void UpdateBoard::push_message(int64_t id, std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it != boxes_.end()) it->second.pending.messages.push_back(std::move(message));
}

void UpdateBoard::finish(int64_t id, FinishReason reason, std::string error, RequestMetrics metrics) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) return;
    auto& u = it->second.pending;
    u.finished = true;
    u.finish_reason = reason;
    u.error = std::move(error);
    u.metrics = std::move(metrics);
  }
  cv_.notify_all();
}

RequestUpdate UpdateBoard::poll(int64_t id, std::optional<std::chrono::microseconds> timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end())
    throw std::invalid_argument("unknown request id " + std::to_string(id) +
                                " (never submitted, or finished and already polled to the end)");
  auto ready = [&] {
    const auto& u = boxes_.at(id).pending;
    return u.finished || !u.tokens.empty();
  };
  if (timeout) {
    cv_.wait_for(lock, *timeout, ready);
  } else {
    cv_.wait(lock, ready);
  }
  it = boxes_.find(id);
  RequestUpdate out = std::move(it->second.pending);
  if (out.finished) {
    boxes_.erase(it);
  } else {
    it->second.pending = RequestUpdate{};
  }
  return out;
}

bool UpdateBoard::known(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return boxes_.count(id) > 0;
}

}  // namespace saguaro
