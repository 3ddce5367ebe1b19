// The machine's memory read bandwidth (include/saguaro/memory_bandwidth.hpp).
#include "saguaro/memory_bandwidth.hpp"

#include "saguaro/huge_pages.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace saguaro {

namespace {

// Sums a part as 64-bit words in 8 independent chains: the compiler vectorizes it, and one add per
// loaded word keeps the loop far below any core's compute rate, so the memory stream bounds it.
uint64_t read_part(const uint64_t* p, int64_t words) {
  uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= words; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
  for (; i < words; ++i) acc[0] += p[i];
  uint64_t s = 0;
  for (uint64_t a : acc) s += a;
  return s;
}

}  // namespace

double memory_read_bandwidth(int64_t bytes, int threads, int reps) {
  constexpr int64_t kMiB = int64_t{1} << 20;
  if (bytes < kMiB || bytes > 64 * 1024 * kMiB)
    throw std::invalid_argument("memory_read_bandwidth: bytes must be in [1 MiB, 64 GiB], got " +
                                std::to_string(bytes));
  if (threads < 1 || threads > 256)
    throw std::invalid_argument("memory_read_bandwidth: threads must be in [1, 256], got " + std::to_string(threads));
  if (reps < 1) throw std::invalid_argument("memory_read_bandwidth: reps must be >= 1, got " + std::to_string(reps));
  const int64_t words = bytes / 8;
  // On huge pages where the kernel grants them, like the packed weights (weight_memory.py), so that the
  // roofline is that of the memory a decode streams: allocated uninitialized, aligned, advised, then written.
  const int64_t pad = static_cast<int64_t>(kHugePageBytes / 8);
  std::unique_ptr<uint64_t[]> storage(new uint64_t[static_cast<size_t>(words + pad)]);
  const uintptr_t at = reinterpret_cast<uintptr_t>(storage.get());
  uint64_t* buf = storage.get() + ((kHugePageBytes - at % kHugePageBytes) % kHugePageBytes) / 8;
  advise_huge_pages(buf, static_cast<size_t>(words) * 8);
  for (int64_t i = 0; i < words; ++i) buf[i] = static_cast<uint64_t>(i);  // every page touched: resident
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    auto part = [&](int t) {
      const int64_t begin = words * t / threads, end = words * (t + 1) / threads;
      sums[t] = read_part(buf + begin, end - begin);
    };
    for (int t = 1; t < threads; ++t) pool.emplace_back(part, t);
    part(0);
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(words * 8) / s);
  }
  // The sums are used, so the reads cannot be optimized away.
  volatile uint64_t sink = 0;
  for (uint64_t v : sums) sink = sink + v;
  return best;
}

}  // namespace saguaro
