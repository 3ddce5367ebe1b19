#pragma once
// How the target and the draft exchange messages (docs/architecture.md: in-process now, NCCL/processes later).
//
// Contract of every Transport:
// * send_to_draft / receive_at_draft / send_to_target / receive_at_target: one direction each.
// * receive_* blocks up to `timeout` (at most a year; <= 0 polls once) and returns false on timeout, or once the transport is closed AND
//   everything sent before the close has been received (close drains, it does not discard).
// * close() wakes every waiting receiver (and every sender waiting for room); idempotent.
// * A send after close() is discarded (nobody will receive it) and does not block.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>

#include "saguaro/spsc_queue.hpp"

namespace saguaro {

template <class ToDraft, class ToTarget>
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void send_to_draft(ToDraft msg) = 0;
  virtual bool receive_at_draft(ToDraft& out, std::chrono::microseconds timeout) = 0;  // false on timeout or closed
  virtual void send_to_target(ToTarget msg) = 0;
  virtual bool receive_at_target(ToTarget& out, std::chrono::microseconds timeout) = 0;
  virtual void close() = 0;  // wakes every waiter; later receives return false once drained
  virtual bool closed() const = 0;
  // Which draft is at the other end: a transport that can lose its draft and attach a new one (which
  // knows no sequence) counts up; the target worker re-sends every sequence when it changes.
  virtual uint64_t epoch() const { return 0; }
};

// One direction of an InProcessTransport: an SpscQueue for the data, plus a sleep path for a receiver
// that has spun without success. The data path is lock-free; the mutex is taken only by a receiver
// going to sleep and by a sender that sees a sleeping receiver (or by close()).
template <class T>
class InProcessChannel {
 public:
  InProcessChannel(size_t capacity, const std::atomic<bool>* closed) : queue_(capacity), closed_(closed) {}

  // Single producer. Waits (polling with back-off) while the queue is full, so nothing is dropped.
  void send(T msg) {
    if (closed_->load(std::memory_order_acquire)) return;  // discarded: nobody will receive it
    int spins = 0;
    while (!queue_.try_push_move(msg)) {
      if (closed_->load(std::memory_order_acquire)) return;  // discarded: nobody will receive it
      backoff(spins++);
    }
    // An RMW (not a load) on sleepers_: RMWs of one atomic are totally ordered, so either this one
    // comes after a receiver's registration and sees the sleeper (and wakes it under the mutex), or it
    // comes before, and the registration's acquire makes the pushed item visible to the receiver's
    // re-check. No standalone fence needed (ThreadSanitizer does not model those).
    if (sleepers_.fetch_add(0, std::memory_order_acq_rel) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      cv_.notify_all();
    }
  }

  // Single consumer.
  bool receive(T& out, std::chrono::microseconds timeout) {
    if (queue_.try_pop(out)) return true;
    // Capped so that a "forever" timeout (microseconds::max()) cannot overflow the deadline.
    const auto wait = std::clamp<std::chrono::microseconds>(timeout, std::chrono::microseconds(0), kLongestWait);
    const auto deadline = std::chrono::steady_clock::now() + wait;
    // Spin briefly: a round trip between the two workers is often shorter than a sleep/wake.
    for (int i = 0; i < kSpinPolls; ++i) {
      if (queue_.try_pop(out)) return true;
      if (closed_->load(std::memory_order_acquire)) return queue_.try_pop(out);
      if (std::chrono::steady_clock::now() >= deadline) return queue_.try_pop(out);
      if (i >= kBusyPolls) std::this_thread::yield();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1, std::memory_order_acq_rel);
    bool got = false;
    for (;;) {
      if (queue_.try_pop(out)) {
        got = true;
        break;
      }
      // closed is read after a failed pop; a final pop drains an item sent just before close().
      if (closed_->load(std::memory_order_acquire)) {
        got = queue_.try_pop(out);
        break;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        got = queue_.try_pop(out);
        break;
      }
    }
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    return got;
  }

  // Called by close(): wakes a sleeping receiver.
  void wake_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    cv_.notify_all();
  }

  size_t capacity() const { return queue_.capacity(); }

 private:
  static constexpr std::chrono::microseconds kLongestWait = std::chrono::hours(24 * 365);
  static constexpr int kBusyPolls = 64;
  static constexpr int kSpinPolls = 256;

  static void backoff(int spins) {
    if (spins < kBusyPolls) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  SpscQueue<T> queue_;
  const std::atomic<bool>* closed_;
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
};

// Target and draft threads in one process. Threading contract: one thread sends to the draft and one
// thread receives at the draft (likewise towards the target) — each direction is an SpscQueue.
// close() and closed() may be called from any thread.
template <class ToDraft, class ToTarget>
class InProcessTransport final : public Transport<ToDraft, ToTarget> {
 public:
  // capacity: messages each direction holds before a sender waits.
  explicit InProcessTransport(size_t capacity = 1024)
      : to_draft_(capacity, &closed_), to_target_(capacity, &closed_) {}

  void send_to_draft(ToDraft msg) override {
    sent_to_draft_.fetch_add(1, std::memory_order_relaxed);  // counted before the draft can take it
    to_draft_.send(std::move(msg));
  }
  bool receive_at_draft(ToDraft& out, std::chrono::microseconds timeout) override {
    return to_draft_.receive(out, timeout);
  }
  // Messages sent to the draft so far; with the draft worker's count of messages handled, tells
  // whether it has work (runtime.cpp). Exact on the sending thread.
  uint64_t sent_to_draft() const { return sent_to_draft_.load(std::memory_order_relaxed); }
  void send_to_target(ToTarget msg) override { to_target_.send(std::move(msg)); }
  bool receive_at_target(ToTarget& out, std::chrono::microseconds timeout) override {
    return to_target_.receive(out, timeout);
  }
  void close() override {
    closed_.store(true, std::memory_order_seq_cst);
    to_draft_.wake_all();
    to_target_.wake_all();
  }
  bool closed() const override { return closed_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> sent_to_draft_{0};
  InProcessChannel<ToDraft> to_draft_;
  InProcessChannel<ToTarget> to_target_;
};

}  // namespace saguaro
