// The roofline measurements of the small-M linear kernel (include/saguaro/small_gemm.hpp).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/small_gemm.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SAGUARO_ROOFLINE_X86 1
#endif

namespace saguaro {

namespace {

using Clock = std::chrono::steady_clock;

#ifdef SAGUARO_ROOFLINE_X86
// 12 chains: enough to cover a 4-cycle FMA latency on two pipes with room to spare. Each chain
// starts from its own value so the compiler cannot merge them; the result is returned so the
// loop is not dropped.
__attribute__((target("avx2,fma"))) float fma_chains(int64_t steps) {
  constexpr int kChains = 12;
  __m256 acc[kChains];
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + 0.01f * static_cast<float>(i));
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t s = 0; s < steps; ++s) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  }
  __m256 sum = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, sum);
  return out[0];
}
#endif

}  // namespace

double small_gemm_fma_peak(double seconds) {
  if (!(seconds > 0.0 && seconds <= 10.0))
    throw std::invalid_argument("small_gemm_fma_peak: seconds must be in (0, 10], got " + std::to_string(seconds));
#ifdef SAGUARO_ROOFLINE_X86
  if (!small_gemm_has_avx2()) return 0.0;
  volatile float sink = 0.f;
  int64_t steps = 1 << 16;
  double best = 0.0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    const auto t0 = Clock::now();
    sink = sink + fma_chains(steps);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(steps) * 12 * 8 / s);
    if (s < 1e-3) steps *= 2;  // runs of >= 1 ms keep the timer's share negligible
  }
  return best;
#else
  return 0.0;
#endif
}

double small_gemm_time_packed(int64_t M, int64_t N, int64_t K, int reps, int threads) {
  if (M < 1 || N < 1 || K < 1)
    throw std::invalid_argument("small_gemm_time_packed: M, N and K must be >= 1, got M=" + std::to_string(M) +
                                " N=" + std::to_string(N) + " K=" + std::to_string(K));
  if (reps < 1) throw std::invalid_argument("small_gemm_time_packed: reps must be >= 1, got " + std::to_string(reps));
  if (threads < 1)
    throw std::invalid_argument("small_gemm_time_packed: threads must be >= 1, got " + std::to_string(threads));
  // Finite bf16 values in [1, 2) x small scales: no denormals or infinities to slow the FMAs.
  std::vector<uint16_t> packed(static_cast<size_t>(small_gemm_packed_size(N, K)));
  uint32_t state = 12345u;
  for (auto& v : packed) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<uint16_t>(0x3c00u + (state >> 25));
  }
  std::vector<uint16_t> x(static_cast<size_t>(M * K), uint16_t{0x3f80});
  std::vector<uint16_t> y(static_cast<size_t>(M * N));
  auto call = [&] {
    small_gemm_bf16_packed(x.data(), packed.data(), nullptr, M, N, K, y.data(), nullptr, threads);
  };
  call();
  std::vector<double> t;
  t.reserve(static_cast<size_t>(reps));
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    call();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

}  // namespace saguaro
