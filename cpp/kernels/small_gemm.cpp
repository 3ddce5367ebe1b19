// The batch-invariant bf16 small-M linear kernel (include/saguaro/small_gemm.hpp).
//
// Register blocking is only across rows and panels of columns: every (m, n) output is one fma chain
// over k in order, so the tile shape, the row count, the k chunking, the thread split and the code
// path never change a bit of any output.
#include "saguaro/small_gemm.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "column_pool.hpp"

#if defined(__x86_64__) || defined(__i386__)
#define SAGUARO_SMALL_GEMM_X86 1
#include <immintrin.h>
#endif

namespace saguaro {

namespace {

using detail::ColumnPool;

constexpr int kPanel = 16;     // columns per panel: one 32-byte row of bf16 per k
constexpr int kMaxRows = 6;    // rows per register tile: 12 accumulators + 2 weight vectors + 1 x
constexpr int kMaxPanels = 4;  // panels per register tile (at one row)
// k steps per chunk when several row blocks share a panel: 8 KB of it, reused from L1 by each block.
constexpr int64_t kChunk = 256;

inline int64_t panel_count(int64_t N) { return (N + kPanel - 1) / kPanel; }

// Where W[n, k] lives in the packed layout.
inline int64_t packed_index(int64_t n, int64_t k, int64_t K) {
  const int64_t c = n % kPanel;
  return (n / kPanel) * K * kPanel + k * kPanel + 2 * (c % 8) + c / 8;
}

// Row blocks of at most kMaxRows, as even as possible (M = 8 runs as 4 + 4, not 6 + 2).
inline int64_t block_rows(int64_t M) {
  const int64_t blocks = (M + kMaxRows - 1) / kMaxRows;
  return (M + blocks - 1) / blocks;
}

// Panels per tile for a row block: 1 row x 4 panels (8 accumulators hide the FMA latency of a decode),
// 2 x 2, 3..6 x 1. Not 2 x 3 or 3 x 2: their 12 accumulators, the widened weights, the broadcast and
// the mask need more than AVX2's 16 registers, and the spills made a 3-row call on the 1.5B's head
// 1.35x slower than 3 x 1 (bench/results/roofline.md, session 10).
inline int tile_panels(int64_t rows) { return rows == 1 ? 4 : rows == 2 ? 2 : 1; }

// x rows are widened once per call into fp32.
void widen_rows(const uint16_t* x, int64_t M, int64_t K, std::vector<float>& xs) {
  xs.resize(static_cast<size_t>(M * K));
  for (int64_t i = 0; i < M * K; ++i) xs[i] = bf16_to_float(x[i]);
}

// ---- portable scalar path: the reference arithmetic, one (m, n) at a time ----

template <class Store>
void panels_scalar(const float* xs, const uint16_t* packed, int64_t M, int64_t N, int64_t K, int64_t p0, int64_t p1,
                   const Store& store) {
  for (int64_t n = p0 * kPanel; n < std::min(N, p1 * kPanel); ++n)
    for (int64_t m = 0; m < M; ++m) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc = std::fma(xs[m * K + k], bf16_to_float(packed[packed_index(n, k, K)]), acc);
      store(m, n, acc);
    }
}

// ---- AVX2 + FMA path ----
#ifdef SAGUARO_SMALL_GEMM_X86

// One k step of an R x P tile: each panel row is widened once and used by every row. The high bf16 of
// each 32-bit lane is exact fp32 under a mask; the low one (kShift) is shifted up, or (kShift false)
// read with the load moved back by one element, which puts it in the high half too: one AND fused with
// the load instead of a shift, which on Zen 3 competes with the FMAs for their pipes (the 5-row tile
// went from 83% to 90% of the FMA peak in cache and about 3% faster streamed, session 11). kShift
// false reads one element before the step's row, so it is only for k > 0. Kept as a separate
// always-inline function taking the accumulators by reference: written inline in the k loop, GCC 12
// stores them to the stack every step.
template <int R, int P, bool kShift>
__attribute__((target("avx2,fma"), always_inline)) inline void panel_step(__m256 (&acc)[R * P * 2], const float* xs,
                                                                          int64_t K, const uint16_t* wp, int64_t k) {
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    const uint16_t* src = wp + p * K * kPanel + k * kPanel;
    __m256 lo, hi;
    if constexpr (kShift) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
      lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      hi = _mm256_castsi256_ps(_mm256_and_si256(v, high));
    } else {
      lo = _mm256_and_ps(_mm256_castsi256_ps(high), _mm256_loadu_ps(reinterpret_cast<const float*>(src - 1)));
      hi = _mm256_and_ps(_mm256_castsi256_ps(high), _mm256_loadu_ps(reinterpret_cast<const float*>(src)));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_broadcast_ss(xs + r * K + k);
      acc[(r * P + p) * 2] = _mm256_fmadd_ps(xb, lo, acc[(r * P + p) * 2]);
      acc[(r * P + p) * 2 + 1] = _mm256_fmadd_ps(xb, hi, acc[(r * P + p) * 2 + 1]);
    }
  }
}

// Steps k in [k0, k1) of an R x P tile; acc_io [R][P * 16] holds the running sums between chunks
// (read unless k0 == 0). `prefetch`: fetch each panel 2 KB ahead; the hardware prefetcher alone
// leaves a multi-row tile waiting on memory.
template <int R, int P>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* xs, int64_t K, const uint16_t* wp, int64_t k0,
                                                  int64_t k1, bool prefetch, float* acc_io) {
  constexpr int64_t kAhead = 32 * 64 / sizeof(uint16_t);  // 32 cache lines, in elements
  __m256 acc[R * P * 2];
#pragma GCC unroll 24
  for (int i = 0; i < R * P * 2; ++i) acc[i] = k0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(acc_io + i * 8);
  // Only the 5-row tile moves the load: with it GCC spills the 6-row tile's 12 accumulators (62% of
  // the FMA peak in cache instead of 89%), and the other tiles measured no steady gain (session 11).
  constexpr bool kShift = R != 5;
  int64_t k = k0;
  if constexpr (!kShift) {
    if (k == 0 && k < k1) panel_step<R, P, true>(acc, xs, K, wp, k++);
  }
  if (prefetch) {
    for (; k + 2 <= k1; k += 2) {  // two k steps = one cache line of each panel
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p)
        _mm_prefetch(reinterpret_cast<const char*>(wp + p * K * kPanel + k * kPanel + kAhead), _MM_HINT_T0);
      panel_step<R, P, kShift>(acc, xs, K, wp, k);
      panel_step<R, P, kShift>(acc, xs, K, wp, k + 1);
    }
  }
  for (; k < k1; ++k) panel_step<R, P, kShift>(acc, xs, K, wp, k);
#pragma GCC unroll 24
  for (int i = 0; i < R * P * 2; ++i) _mm256_storeu_ps(acc_io + i * 8, acc[i]);
}

using TileFn = void (*)(const float*, int64_t, const uint16_t*, int64_t, int64_t, bool, float*);

TileFn tile_for(int64_t rows, int panels) {
  switch (rows * 10 + panels) {
    case 11: return &tile_avx2<1, 1>;
    case 12: return &tile_avx2<1, 2>;
    case 13: return &tile_avx2<1, 3>;
    case 14: return &tile_avx2<1, 4>;
    case 21: return &tile_avx2<2, 1>;
    case 22: return &tile_avx2<2, 2>;
    case 31: return &tile_avx2<3, 1>;
    case 41: return &tile_avx2<4, 1>;
    case 51: return &tile_avx2<5, 1>;
    case 61: return &tile_avx2<6, 1>;
    default: throw std::logic_error("small_gemm: no tile for " + std::to_string(rows) + " rows x " +
                                    std::to_string(panels) + " panels");
  }
}

// Panels [p0, p1) for every row. With more than kMaxRows rows, k runs in chunks and every row block
// takes its turn on a chunk while that part of the panel is in L1, so weights come from memory once.
template <class Store>
void panels_avx2(const float* xs, const uint16_t* packed, int64_t M, int64_t N, int64_t K, int64_t p0, int64_t p1,
                 const Store& store) {
  const int64_t rb = block_rows(M);
  const int P = tile_panels(rb);
  const int64_t blocks = (M + rb - 1) / rb;
  const int64_t chunk = blocks == 1 ? K : kChunk;
  thread_local std::vector<float> acc;  // [block][rows][P * 16], reused across calls
  acc.resize(static_cast<size_t>(blocks * rb * P * kPanel));
  for (int64_t p = p0; p < p1; p += P) {
    const int pc = static_cast<int>(std::min<int64_t>(P, p1 - p));
    const uint16_t* wp = packed + p * K * kPanel;
    for (int64_t k0 = 0; k0 < K; k0 += chunk) {
      const int64_t k1 = std::min(K, k0 + chunk);
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t m0 = b * rb, rows = std::min(rb, M - m0);
        tile_for(rows, pc)(xs + m0 * K, K, wp, k0, k1, b == 0, acc.data() + b * rb * P * kPanel);
      }
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t m0 = b * rb, rows = std::min(rb, M - m0);
      const float* a = acc.data() + b * rb * P * kPanel;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < pc * kPanel && p * kPanel + c < N; ++c) store(m0 + r, p * kPanel + c, a[r * pc * kPanel + c]);
    }
  }
}

#endif  // SAGUARO_SMALL_GEMM_X86

// Runs job(p0, p1) over panel ranges on up to `threads` threads; any split gives the same bits.
void split_panels(int64_t panels, int threads, const std::function<void(int64_t, int64_t)>& job) {
  constexpr int64_t kMinPanels = 4;  // >= 64 columns a part: smaller parts cost more to hand out than they save
  const int64_t max_parts = std::max<int64_t>(1, panels / kMinPanels);
  const int parts = static_cast<int>(std::min<int64_t>(threads, max_parts));
  if (parts > 1) {
    const int64_t per = ((panels + parts - 1) / parts + kMaxPanels - 1) / kMaxPanels * kMaxPanels;
    const std::function<void(int)> part = [&](int i) {
      const int64_t p0 = std::min<int64_t>(panels, i * per), p1 = std::min<int64_t>(panels, p0 + per);
      if (p0 < p1) job(p0, p1);
    };
    if (ColumnPool::instance().try_run(parts, part)) return;
  }
  job(0, panels);
}

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("small_gemm_bf16: " + what); }

void check_sizes(int64_t M, int64_t N, int64_t K) {
  if (M < 1) bad("M (rows of x) must be >= 1, got " + std::to_string(M));
  if (N < 1) bad("N (rows of weight, out_features) must be >= 1, got " + std::to_string(N));
  if (K < 1) bad("K (in_features) must be >= 1, got " + std::to_string(K));
}

}  // namespace

bool small_gemm_has_avx2() {
#ifdef SAGUARO_SMALL_GEMM_X86
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

int64_t small_gemm_packed_size(int64_t N, int64_t K) { return panel_count(N) * K * kPanel; }

void small_gemm_pack_bf16(const uint16_t* weight, int64_t N, int64_t K, uint16_t* packed, int threads) {
  if (N < 1 || K < 1) bad("pack: N and K must be >= 1, got N=" + std::to_string(N) + " K=" + std::to_string(K));
  if (weight == nullptr || packed == nullptr) bad("pack: weight and packed must not be null");
  if (threads < 1) bad("pack: threads must be >= 1, got " + std::to_string(threads));
  split_panels(panel_count(N), threads, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      uint16_t* dst = packed + p * K * kPanel;
      std::fill(dst, dst + K * kPanel, uint16_t{0});
      for (int64_t n = p * kPanel; n < std::min(N, (p + 1) * kPanel); ++n) {
        const int64_t c = n % kPanel, slot = 2 * (c % 8) + c / 8;
        const uint16_t* src = weight + n * K;
        for (int64_t k = 0; k < K; ++k) dst[k * kPanel + slot] = src[k];
      }
    }
  });
}

void small_gemm_bf16_packed(const uint16_t* x, const uint16_t* packed, const uint16_t* bias, int64_t M, int64_t N,
                            int64_t K, uint16_t* y_bf16, float* y_f32, int threads, SmallGemmPath path) {
  check_sizes(M, N, K);
  if (x == nullptr) bad("x is null");
  if (packed == nullptr) bad("weight is null");
  if ((y_bf16 == nullptr) == (y_f32 == nullptr)) bad("out: give exactly one of a bf16 or a float32 output");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  bool use_avx2 = small_gemm_has_avx2();
  if (path == SmallGemmPath::kScalar) use_avx2 = false;
  if (path == SmallGemmPath::kAvx2 && !use_avx2) bad("path 'avx2' was asked for but this CPU lacks AVX2+FMA");

  thread_local std::vector<float> x_rows;  // reused: no allocation or page faults per call
  widen_rows(x, M, K, x_rows);
  const float* xs = x_rows.data();

  auto store = [&](int64_t m, int64_t n, float r) {
    if (bias != nullptr) r = r + bf16_to_float(bias[n]);
    if (y_f32 != nullptr) y_f32[m * N + n] = r;
    else y_bf16[m * N + n] = float_to_bf16(r);
  };
  split_panels(panel_count(N), threads, [&](int64_t p0, int64_t p1) {
#ifdef SAGUARO_SMALL_GEMM_X86
    if (use_avx2) return panels_avx2(xs, packed, M, N, K, p0, p1, store);
#endif
    panels_scalar(xs, packed, M, N, K, p0, p1, store);
  });
}

void small_gemm_bf16(const uint16_t* x, const uint16_t* weight, const uint16_t* bias, int64_t M, int64_t N,
                     int64_t K, uint16_t* y_bf16, float* y_f32, int threads, SmallGemmPath path) {
  check_sizes(M, N, K);
  if (weight == nullptr) bad("weight is null");
  std::vector<uint16_t> packed(static_cast<size_t>(small_gemm_packed_size(N, K)));
  small_gemm_pack_bf16(weight, N, K, packed.data(), threads);
  small_gemm_bf16_packed(x, packed.data(), bias, M, N, K, y_bf16, y_f32, threads, path);
}

}  // namespace saguaro
