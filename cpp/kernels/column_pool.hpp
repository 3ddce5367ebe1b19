// A small persistent thread pool for the small-M linear kernel: one caller at a time splits a job
// into parts. Waking a thread sleeping on a condition variable costs ~40 us on the shared VM (measured:
// a 2048 x 1536 Q4_K decode product took 0.087 ms on 2 threads, 0.048 on 1), and a decode step makes
// ~200 such calls, so a worker that has just finished a part spins a short while (kSpin) for the next
// call of the same forward, and only then sleeps; the caller likewise spins for its parts to finish.
// The spin is bounded so a worker does not hold the core for long after a forward ends (the other
// model's thread may need it).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SAGUARO_POOL_PAUSE() _mm_pause()
#else
#define SAGUARO_POOL_PAUSE() std::this_thread::yield()
#endif

namespace saguaro::detail {

// One caller at a time uses the workers; a second concurrent caller (the other SSD worker thread)
// finds it busy and runs its call alone, which gives the same bits because threads split columns only.
class ColumnPool {
 public:
  static ColumnPool& instance() {
    static ColumnPool pool;
    return pool;
  }

  // Runs job(part) for every part in [0, parts) using the caller and up to parts - 1 workers.
  // Returns false (running nothing) when another caller holds the pool or after a fork.
  bool try_run(int parts, const std::function<void(int)>& job) {
    if (getpid() != owner_pid_) return false;  // a forked child has no workers
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    grow(parts - 1);
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &job;
      parts_ = parts;
      next_.store(0);
      unfinished_ = parts;
      generation_.fetch_add(1);
    }
    work_cv_.notify_all();  // no system call when every worker is spinning
    work_on_parts();
    // no worker may still hold `job` when it goes out of scope
    spin_until([&] { return unfinished_.load() == 0 && active_.load() == 0; });
    std::unique_lock<std::mutex> lock(m_);
    done_cv_.wait(lock, [&] { return unfinished_ == 0 && active_ == 0; });
    job_ = nullptr;
    return true;
  }

  ~ColumnPool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_.store(true);
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  ColumnPool() : owner_pid_(getpid()) {}

  void grow(int want) {
    while (static_cast<int>(workers_.size()) < want) workers_.emplace_back([this] { worker_loop(); });
  }

  void work_on_parts() {
    const std::function<void(int)>* job;
    int parts;
    {
      std::lock_guard<std::mutex> lock(m_);
      job = job_;
      parts = parts_;
      if (job == nullptr) return;
      ++active_;
    }
    int done = 0;
    for (int p = next_.fetch_add(1); p < parts; p = next_.fetch_add(1)) {
      (*job)(p);
      ++done;
    }
    std::lock_guard<std::mutex> lock(m_);
    unfinished_ -= done;
    --active_;
    if (unfinished_ == 0 && active_ == 0) done_cv_.notify_all();
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return stop_.load() || generation_.load() != seen; });
      {
        std::unique_lock<std::mutex> lock(m_);
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work_on_parts();
    }
  }

  // Polls done() for at most kSpin; the caller then takes the lock and sleeps if it is still false.
  template <typename Done>
  static void spin_until(Done done) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (int i = 1; !done(); ++i) {
      SAGUARO_POOL_PAUSE();
      if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return;
    }
  }

  static constexpr std::chrono::microseconds kSpin{200};

  const pid_t owner_pid_;
  std::mutex busy_;
  std::mutex m_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  std::atomic<int> next_{0};
  // written under m_; atomic so that the spins may read them without it
  std::atomic<int> unfinished_{0};
  std::atomic<int> active_{0};  // threads currently holding job_
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

// Runs run(c0, c1) over [0, n) columns (or column groups) split into at most `threads` parts of at least
// `min_part`, on the pool; alone when the pool is busy or one part is all there is. Any split gives the
// same bits when every output is computed whole by one part.
inline void split_columns(int64_t n, int threads, int64_t min_part, const std::function<void(int64_t, int64_t)>& run) {
  const int parts = static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, n / min_part)));
  if (parts > 1) {
    const int64_t per = (n + parts - 1) / parts;
    const std::function<void(int)> part = [&](int i) {
      const int64_t c0 = std::min<int64_t>(n, i * per), c1 = std::min<int64_t>(n, c0 + per);
      if (c0 < c1) run(c0, c1);
    };
    if (ColumnPool::instance().try_run(parts, part)) return;
  }
  run(0, n);
}

}  // namespace saguaro::detail
