#pragma once
// Bounded lock-free single-producer single-consumer ring (the data path of the transport).
//
// Thread-safety contract: at most ONE thread pushes (try_push / try_push_move) and at most ONE thread
// pops (try_pop) at any time; they may be different threads running concurrently. capacity(),
// size_approx() and empty_approx() may be called from anywhere (their answers are snapshots).
//
// head_ (consumer) and tail_ (producer) are monotone 64-bit counters on separate cache lines; each side
// also keeps a private copy of the other side's counter so the common case touches no shared line.
// The producer publishes a slot with a release store of tail_, the consumer frees it with a release
// store of head_; each side acquires the other's counter before touching a slot.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace saguaro {

template <class T>
class SpscQueue {
 public:
  // capacity >= 1 items; std::invalid_argument otherwise.
  explicit SpscQueue(size_t capacity) : capacity_(capacity) {
    if (capacity == 0) throw std::invalid_argument("SpscQueue: capacity must be >= 1");
    slots_.reset(new Slot[capacity]);
  }
  ~SpscQueue() {
    while (try_pop_destroy()) {
    }
  }
  SpscQueue(const SpscQueue&) = delete;
  SpscQueue& operator=(const SpscQueue&) = delete;

  // false when full (the value is then discarded; use try_push_move to keep it).
  bool try_push(T value) { return try_push_move(value); }

  // Added to the contract: moves from value only on success, so a caller can retry a full queue.
  bool try_push_move(T& value) {
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_cache_ >= capacity_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (tail - head_cache_ >= capacity_) return false;
    }
    ::new (static_cast<void*>(slots_[tail % capacity_].bytes)) T(std::move(value));
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  // false when empty.
  bool try_pop(T& out) {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (head == tail_cache_) return false;
    }
    T* item = slot_ptr(head);
    out = std::move(*item);
    item->~T();
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  size_t capacity() const { return capacity_; }
  size_t size_approx() const {
    const uint64_t head = head_.load(std::memory_order_acquire);
    const uint64_t tail = tail_.load(std::memory_order_acquire);
    return tail >= head ? static_cast<size_t>(tail - head) : 0;
  }
  bool empty_approx() const { return size_approx() == 0; }

 private:
  static constexpr size_t kLine = 64;
  struct Slot {
    alignas(T) unsigned char bytes[sizeof(T)];
  };

  T* slot_ptr(uint64_t index) {
    return std::launder(reinterpret_cast<T*>(slots_[index % capacity_].bytes));
  }

  // Destroys the oldest item, if any (destructor only: no other thread is running then).
  bool try_pop_destroy() {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_.load(std::memory_order_acquire)) return false;
    slot_ptr(head)->~T();
    head_.store(head + 1, std::memory_order_release);
    return true;
  }

  const size_t capacity_;
  std::unique_ptr<Slot[]> slots_;
  alignas(kLine) std::atomic<uint64_t> head_{0};  // next slot to pop (written by the consumer)
  uint64_t tail_cache_ = 0;                        // consumer's last view of tail_
  alignas(kLine) std::atomic<uint64_t> tail_{0};  // next slot to fill (written by the producer)
  uint64_t head_cache_ = 0;                        // producer's last view of head_ (alignas pads the object)
};

}  // namespace saguaro
