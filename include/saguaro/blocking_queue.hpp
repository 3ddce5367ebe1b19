#pragma once
// A many-producer, many-consumer FIFO with a timed pop and a close, for the wire transports: their
// producers are a worker thread and the link's receiving thread, so the lock-free SPSC queue of the
// in-process transport does not fit, and a message every few milliseconds needs no lock-freedom.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <utility>

namespace saguaro {

template <class T>
class BlockingQueue {
 public:
  // Discarded after close() (nobody will pop it); returns whether it was queued.
  bool push(T item) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
    return true;
  }

  // Waits up to `timeout` (<= 0 polls once); false on timeout, or when closed and drained.
  bool pop(T& out, std::chrono::microseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    const auto wait = std::min<std::chrono::microseconds>(std::max<std::chrono::microseconds>(timeout, {}), kLongestWait);
    cv_.wait_for(lock, wait, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    out = std::move(items_.front());
    items_.pop_front();
    return true;
  }

  // Drops everything queued (a peer that is gone will never read it).
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    items_.clear();
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

 private:
  static constexpr std::chrono::microseconds kLongestWait = std::chrono::hours(24 * 365);
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_;
  bool closed_ = false;
};

}  // namespace saguaro
