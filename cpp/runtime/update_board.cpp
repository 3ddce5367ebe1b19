#include "saguaro/update_board.hpp"

#include <algorithm>
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
    note_news(id);
  }
  cv_.notify_all();
}

void UpdateBoard::push_message(int64_t id, std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) return;
  it->second.pending.messages.push_back(std::move(message));
  note_news(id);
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
    note_news(id);
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

void UpdateBoard::note_news(int64_t id) {
  // The writer calls notify() every loop turn, which empties the list, listener or not.
  news_.push_back(id);
}

void UpdateBoard::set_listener(UpdateListener listener) {
  auto fresh = listener ? std::make_shared<const UpdateListener>(std::move(listener)) : nullptr;
  std::shared_ptr<const UpdateListener> old;
  {
    std::lock_guard<std::mutex> lock(listener_mu_);
    old = std::move(listener_);
    listener_ = std::move(fresh);
  }
  // `old` dies here, outside the lock (a Python callable's wrapper takes the GIL to die).
}

void UpdateBoard::notify() {
  std::vector<int64_t> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (news_.empty()) return;
    ids.swap(news_);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::shared_ptr<const UpdateListener> listener;
  {
    std::lock_guard<std::mutex> lock(listener_mu_);
    listener = listener_;
  }
  if (!listener) return;
  try {
    (*listener)(ids);
  } catch (const std::exception&) {
    // advisory only: the updates themselves stay on the board for poll()
  }
}

}  // namespace saguaro
