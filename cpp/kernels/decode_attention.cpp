// Batch-invariant one-row-at-a-time causal attention (include/saguaro/decode_attention.hpp).
#include "saguaro/decode_attention.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "column_pool.hpp"

#if defined(__x86_64__) || defined(__i386__)
#define SAGUARO_ATTENTION_X86 1
#include <immintrin.h>
#endif

namespace saguaro {

namespace {

constexpr int kLanes = 8;

inline float fixed_hsum(const float a[kLanes]) {
  const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
  const float t0 = s0 + s2, t1 = s1 + s3;
  return t0 + t1;
}

// The shared second half of a (row, head): softmax weights in place, their sum in t order.
float softmax_in_place(float* s, int64_t L) {
  float m = s[0];
  for (int64_t t = 1; t < L; ++t) m = std::max(m, s[t]);
  float z = 0.f;
  for (int64_t t = 0; t < L; ++t) {
    s[t] = std::exp(s[t] - m);
    z += s[t];
  }
  return z;
}

// Which KV slot the t-th visible position of a row is: a prefix [0, prefix) then strided own slots.
struct Visible {
  int64_t prefix, own_first, own_stride, count;
  int64_t slot(int64_t t) const { return t < prefix ? t : own_first + (t - prefix) * own_stride; }
};

// ---- scalar twin ----

void head_scalar(const float* q, const uint16_t* k, const uint16_t* v, const Visible& vis, int64_t D, float scale,
                 float* s, float* o, uint16_t* out) {
  const int64_t L = vis.count;
  for (int64_t t = 0; t < L; ++t) {
    float acc[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const uint16_t* kt = k + vis.slot(t) * D;
    for (int64_t d = 0; d < D; ++d) acc[d % kLanes] = std::fma(q[d], bf16_to_float(kt[d]), acc[d % kLanes]);
    s[t] = fixed_hsum(acc) * scale;
  }
  const float z = softmax_in_place(s, L);
  std::fill(o, o + D, 0.f);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t d = 0; d < D; ++d) o[d] = std::fma(s[t], bf16_to_float(v[vis.slot(t) * D + d]), o[d]);
  for (int64_t d = 0; d < D; ++d) out[d] = float_to_bf16(o[d] / z);
}

// ---- AVX2 + FMA path (D % 8 == 0) ----
#ifdef SAGUARO_ATTENTION_X86

__attribute__((target("avx2,fma"), always_inline)) inline __m256 widen8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma"))) void head_avx2(const float* q, const uint16_t* k, const uint16_t* v,
                                                  const Visible& vis, int64_t D, float scale, float* s, float* o,
                                                  uint16_t* out) {
  const int64_t L = vis.count;
  alignas(32) float lanes[kLanes];
  for (int64_t t = 0; t < L; ++t) {
    const uint16_t* kt = k + vis.slot(t) * D;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; d += kLanes) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), widen8(kt + d), acc);
    _mm256_store_ps(lanes, acc);
    s[t] = fixed_hsum(lanes) * scale;
  }
  const float z = softmax_in_place(s, L);
  for (int64_t d0 = 0; d0 < D; d0 += 4 * kLanes) {
    // up to 4 independent chains of 8 output lanes each: hides the FMA latency
    const int64_t w = std::min<int64_t>(4 * kLanes, D - d0);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t t = 0; t < L; ++t) {
      const __m256 p = _mm256_set1_ps(s[t]);
      const uint16_t* vt = v + vis.slot(t) * D + d0;
      a0 = _mm256_fmadd_ps(p, widen8(vt), a0);
      if (w > 8) a1 = _mm256_fmadd_ps(p, widen8(vt + 8), a1);
      if (w > 16) a2 = _mm256_fmadd_ps(p, widen8(vt + 16), a2);
      if (w > 24) a3 = _mm256_fmadd_ps(p, widen8(vt + 24), a3);
    }
    _mm256_storeu_ps(o + d0, a0);
    if (w > 8) _mm256_storeu_ps(o + d0 + 8, a1);
    if (w > 16) _mm256_storeu_ps(o + d0 + 16, a2);
    if (w > 24) _mm256_storeu_ps(o + d0 + 24, a3);
  }
  for (int64_t d = 0; d < D; ++d) out[d] = float_to_bf16(o[d] / z);
}

#endif  // SAGUARO_ATTENTION_X86

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("causal_attention_bf16: " + what); }

}  // namespace

namespace {

// Runs every (row, head) pair; visible(row) gives the row's slots.
template <class VisibleOf>
void run_rows(const uint16_t* q, int64_t q_row_stride, const uint16_t* keys, const uint16_t* values, int64_t capacity,
              int64_t n, int64_t H, int64_t Hkv, int64_t D, float scale, uint16_t* out, int threads, SmallGemmPath path,
              int64_t max_len, const VisibleOf& visible) {
  if (n < 1) bad("n (query rows) must be >= 1, got " + std::to_string(n));
  if (H < 1 || Hkv < 1 || H % Hkv != 0)
    bad("heads: H must be a positive multiple of Hkv, got H=" + std::to_string(H) + " Hkv=" + std::to_string(Hkv));
  if (D < 1) bad("D (head_dim) must be >= 1, got " + std::to_string(D));
  if (q_row_stride < H * D) bad("q_row_stride must be >= H * D");
  if (q == nullptr || keys == nullptr || values == nullptr || out == nullptr) bad("a pointer is null");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  bool use_avx2 = small_gemm_has_avx2() && D % kLanes == 0;
  if (path == SmallGemmPath::kScalar) use_avx2 = false;
  if (path == SmallGemmPath::kAvx2 && !small_gemm_has_avx2()) bad("path 'avx2' was asked for but this CPU lacks AVX2+FMA");

  const int64_t group = H / Hkv, pairs = n * H;
  auto run = [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scratch;  // q row, scores, output accumulator
    scratch.resize(static_cast<size_t>(D + max_len + D));
    float* qf = scratch.data();
    float* s = qf + D;
    float* o = s + max_len;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = i / H, h = i % H;
      const Visible vis = visible(row);
      const uint16_t* qr = q + row * q_row_stride + h * D;
      for (int64_t d = 0; d < D; ++d) qf[d] = bf16_to_float(qr[d]);
      const uint16_t* k = keys + (h / group) * capacity * D;
      const uint16_t* v = values + (h / group) * capacity * D;
      uint16_t* dst = out + (row * H + h) * D;
#ifdef SAGUARO_ATTENTION_X86
      if (use_avx2) {
        head_avx2(qf, k, v, vis, D, scale, s, o, dst);
        continue;
      }
#endif
      head_scalar(qf, k, v, vis, D, scale, s, o, dst);
    }
  };
  // hand out (row, head) pairs only when there is enough work to pay for waking the pool
  const int64_t work = pairs * max_len * D;
  const int parts = static_cast<int>(std::min<int64_t>({threads, pairs, std::max<int64_t>(1, work / (1 << 18))}));
  if (parts > 1) {
    const int64_t per = (pairs + parts - 1) / parts;
    const std::function<void(int)> job = [&](int p) { run(std::min(pairs, p * per), std::min(pairs, (p + 1) * per)); };
    if (detail::ColumnPool::instance().try_run(parts, job)) return;
  }
  run(0, pairs);
}

}  // namespace

void causal_attention_bf16(const uint16_t* q, int64_t q_row_stride, const uint16_t* keys, const uint16_t* values,
                           int64_t capacity, int64_t n, int64_t H, int64_t Hkv, int64_t D, int64_t start, float scale,
                           uint16_t* out, int threads, SmallGemmPath path) {
  if (n < 1) bad("n (query rows) must be >= 1, got " + std::to_string(n));
  if (start < 0 || start + n > capacity)
    bad("start + n must be <= capacity, got start=" + std::to_string(start) + " n=" + std::to_string(n) +
        " capacity=" + std::to_string(capacity));
  run_rows(q, q_row_stride, keys, values, capacity, n, H, Hkv, D, scale, out, threads, path, start + n,
           [start](int64_t row) { return Visible{start + row + 1, 0, 0, start + row + 1}; });
}

void branch_attention_bf16(const uint16_t* q, int64_t q_row_stride, const uint16_t* keys, const uint16_t* values,
                           int64_t capacity, int64_t n, int64_t H, int64_t Hkv, int64_t D, const int64_t* prefix,
                           const int64_t* own_first, int64_t own_stride, int64_t own_count, float scale,
                           uint16_t* out, int threads, SmallGemmPath path) {
  if (n < 1) bad("n (query rows) must be >= 1, got " + std::to_string(n));
  if (prefix == nullptr || (own_count > 0 && own_first == nullptr)) bad("prefix / own_first is null");
  if (own_count < 0 || own_stride < 0) bad("own_count and own_stride must be >= 0");
  int64_t max_len = 1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t last_own = own_count > 0 ? own_first[i] + (own_count - 1) * own_stride : -1;
    if (prefix[i] < 0 || prefix[i] > capacity || prefix[i] + own_count < 1 || (own_count > 0 && own_first[i] < 0) ||
        last_own >= capacity)
      bad("row " + std::to_string(i) + ": its visible slots must lie in [0, capacity = " + std::to_string(capacity) +
          ") and be at least one");
    max_len = std::max(max_len, prefix[i] + own_count);
  }
  run_rows(q, q_row_stride, keys, values, capacity, n, H, Hkv, D, scale, out, threads, path, max_len,
           [&](int64_t row) {
             return Visible{prefix[row], own_count > 0 ? own_first[row] : 0, own_stride, prefix[row] + own_count};
           });
}

}  // namespace saguaro
