// The batch-invariant bf16 small-M linear kernel (include/saguaro/small_gemm.hpp).
//
// Register blocking is only across rows and columns: every (m, n) output runs the same fixed
// reduction over K (8 fp32 lanes in k order, then a fixed horizontal sum), so the tile shape, the
// row count, the thread split and the code path never change a bit of any output.
#include "saguaro/small_gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define SAGUARO_SMALL_GEMM_X86 1
#include <immintrin.h>
#endif

namespace saguaro {

namespace {

constexpr int kLanes = 8;

// The fixed horizontal sum of the 8 lanes, shared by both paths.
inline float fixed_hsum(const float a[kLanes]) {
  const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
  const float t0 = s0 + s2, t1 = s1 + s3;
  return t0 + t1;
}

// x rows are widened once per call into fp32 rows zero-padded to a multiple of 8.
void widen_rows(const uint16_t* x, int64_t M, int64_t K, int64_t Kp, std::vector<float>& xs) {
  xs.assign(static_cast<size_t>(M * Kp), 0.f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xs[m * Kp + k] = bf16_to_float(x[m * K + k]);
}

// ---- portable scalar path: the reference arithmetic, one (m, n) at a time ----

float dot_scalar(const float* xr, const uint16_t* wr, int64_t K, int64_t Kp) {
  float acc[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int64_t k0 = 0; k0 < Kp; k0 += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      // weights past K read +0 like the AVX2 path's zero-filled tail
      const float w = k0 + l < K ? bf16_to_float(wr[k0 + l]) : 0.f;
      acc[l] = std::fma(xr[k0 + l], w, acc[l]);
    }
  return fixed_hsum(acc);
}

// Columns [n0, n1) of every row; results are the fp32 dot products without bias.
template <class Store>
void columns_scalar(const float* xs, int64_t Kp, const uint16_t* w, int64_t K, int64_t M, int64_t n0, int64_t n1,
                    const Store& store) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t m = 0; m < M; ++m) store(m, n, dot_scalar(xs + m * Kp, w + n * K, K, Kp));
}

// ---- AVX2 + FMA path ----
#ifdef SAGUARO_SMALL_GEMM_X86

__attribute__((target("avx2,fma"), always_inline)) inline __m256 widen_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma"))) inline float hsum_avx2(__m256 v) {
  alignas(32) float a[kLanes];
  _mm256_store_ps(a, v);
  return fixed_hsum(a);
}

// One 8-element chunk of k for an R x C tile: each weight vector is widened once and used by every
// row; the loop order keeps R x vectors + R * C accumulators + 1 weight vector in registers.
template <int R, int C>
__attribute__((target("avx2,fma"), always_inline)) inline void tile_chunk(__m256 (&acc)[R][C], const float* xs,
                                                                         int64_t Kp, const uint16_t* const* src,
                                                                         int64_t kw, int64_t kx) {
  __m256 xv[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(xs + r * Kp + kx);
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    const __m256 wv = widen_bf16(src[c] + kw);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
  }
}

// One R x C register tile: rows xs[r * Kp ...], weight rows w[c * K ...]; out[r * C + c].
// `next` (or null) starts the next tile's C contiguous weight rows: prefetched while this tile runs,
// because rows of ~2 KB are too short for the hardware prefetcher to ramp up on its own.
template <int R, int C>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* xs, int64_t Kp, const uint16_t* w, int64_t K,
                                                  const uint16_t* next, float* out) {
  __m256 acc[R][C];
  const uint16_t* rows[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) rows[c] = w + c * K;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const int64_t kfull = K - K % kLanes;
  for (int64_t k = 0; k < kfull; k += kLanes) {
    // C * 8 weights (C * 16 bytes) of the next tile per chunk: the whole next tile by the end
    if (next != nullptr && (k * C) % 32 == 0) _mm_prefetch(reinterpret_cast<const char*>(next + k * C), _MM_HINT_T1);
    tile_chunk<R, C>(acc, xs, Kp, rows, k, k);
  }
  if (kfull < K) {
    // the weight rows end inside this chunk: copy the tail into zeroed lanes instead of reading past
    alignas(16) uint16_t tail[C][kLanes] = {};
    const uint16_t* tails[C];
    for (int c = 0; c < C; ++c) {
      std::copy(rows[c] + kfull, rows[c] + K, tail[c]);
      tails[c] = tail[c];
    }
    tile_chunk<R, C>(acc, xs, Kp, tails, 0, kfull);
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r * C + c] = hsum_avx2(acc[r][c]);
}

using TileFn = void (*)(const float*, int64_t, const uint16_t*, int64_t, const uint16_t*, float*);

// 3 rows x 4 columns: 12 accumulators + 3 x vectors + 1 weight vector fill the 16 registers; other
// shapes measured slower on the AVX2 EPYC (bench/results/linear.md).
constexpr int kTileRows = 3;
constexpr int kTileCols = 4;

template <int C>
TileFn tile_for_rows(int rows) {
  switch (rows) {
    case 1: return &tile_avx2<1, C>;
    case 2: return &tile_avx2<2, C>;
    default: return &tile_avx2<3, C>;
  }
}

template <class Store>
void columns_avx2(const float* xs, int64_t Kp, const uint16_t* w, int64_t K, int64_t M, int64_t n0, int64_t n1,
                  const Store& store) {
  float out[kTileRows * kTileCols];
  for (int64_t n = n0; n < n1;) {
    const int C = n + kTileCols <= n1 ? kTileCols : 1;
    // all row blocks of a column tile in turn, so its weight rows come from memory once
    for (int64_t m0 = 0; m0 < M; m0 += kTileRows) {
      const int rows = static_cast<int>(std::min<int64_t>(M - m0, kTileRows));
      const TileFn fn = C == kTileCols ? tile_for_rows<kTileCols>(rows) : tile_for_rows<1>(rows);
      const uint16_t* next = m0 == 0 && n + 2 * C <= n1 ? w + (n + C) * K : nullptr;
      fn(xs + m0 * Kp, Kp, w + n * K, K, next, out);
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < C; ++c) store(m0 + r, n + c, out[r * C + c]);
    }
    n += C;
  }
}

#endif  // SAGUARO_SMALL_GEMM_X86

// ---- a small persistent pool that splits columns ----

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
      ++generation_;
    }
    work_cv_.notify_all();
    work_on_parts();
    std::unique_lock<std::mutex> lock(m_);
    // no worker may still hold `job` when it goes out of scope
    done_cv_.wait(lock, [&] { return unfinished_ == 0 && active_ == 0; });
    job_ = nullptr;
    return true;
  }

  ~ColumnPool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
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
      {
        std::unique_lock<std::mutex> lock(m_);
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work_on_parts();
    }
  }

  const pid_t owner_pid_;
  std::mutex busy_;
  std::mutex m_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  std::atomic<int> next_{0};
  int unfinished_ = 0;
  int active_ = 0;  // threads currently holding job_
  uint64_t generation_ = 0;
  bool stop_ = false;
};

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("small_gemm_bf16: " + what); }

}  // namespace

bool small_gemm_has_avx2() {
#ifdef SAGUARO_SMALL_GEMM_X86
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

void small_gemm_bf16(const uint16_t* x, const uint16_t* weight, const uint16_t* bias, int64_t M, int64_t N,
                     int64_t K, uint16_t* y_bf16, float* y_f32, int threads, SmallGemmPath path) {
  if (M < 1) bad("M (rows of x) must be >= 1, got " + std::to_string(M));
  if (N < 1) bad("N (rows of weight, out_features) must be >= 1, got " + std::to_string(N));
  if (K < 1) bad("K (in_features) must be >= 1, got " + std::to_string(K));
  if (x == nullptr) bad("x is null");
  if (weight == nullptr) bad("weight is null");
  if ((y_bf16 == nullptr) == (y_f32 == nullptr)) bad("out: give exactly one of a bf16 or a float32 output");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  bool use_avx2 = small_gemm_has_avx2();
  if (path == SmallGemmPath::kScalar) use_avx2 = false;
  if (path == SmallGemmPath::kAvx2 && !use_avx2) bad("path 'avx2' was asked for but this CPU lacks AVX2+FMA");

  // x widened once per call into zero-padded fp32 rows (reused buffer: no page faults per call)
  const int64_t Kp = (K + kLanes - 1) / kLanes * kLanes;
  thread_local std::vector<float> x_rows;  // reused: no allocation or page faults per call
  widen_rows(x, M, K, Kp, x_rows);
  const float* xs = x_rows.data();

  auto store = [&](int64_t m, int64_t n, float r) {
    if (bias != nullptr) r = r + bf16_to_float(bias[n]);
    if (y_f32 != nullptr) y_f32[m * N + n] = r;
    else y_bf16[m * N + n] = float_to_bf16(r);
  };
  auto run_columns = [&](int64_t n0, int64_t n1) {
#ifdef SAGUARO_SMALL_GEMM_X86
    if (use_avx2) return columns_avx2(xs, Kp, weight, K, M, n0, n1, store);
#endif
    columns_scalar(xs, Kp, weight, K, M, n0, n1, store);
  };

  // Parts of at least ~64 columns, aligned to 8 so tiles stay whole; any split gives the same bits.
  const int64_t align = 8, min_part = 64;
  const int64_t max_parts = std::max<int64_t>(1, N / min_part);
  const int parts = static_cast<int>(std::min<int64_t>(threads, max_parts));
  if (parts > 1) {
    const int64_t per = ((N + parts - 1) / parts + align - 1) / align * align;
    const std::function<void(int)> job = [&](int p) {
      const int64_t n0 = std::min<int64_t>(N, p * per), n1 = std::min<int64_t>(N, n0 + per);
      if (n0 < n1) run_columns(n0, n1);
    };
    if (ColumnPool::instance().try_run(parts, job)) return;
  }
  run_columns(0, N);
}

}  // namespace saguaro
