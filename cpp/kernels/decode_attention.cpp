// Batch-invariant one-row-at-a-time causal attention (include/saguaro/decode_attention.hpp).
#include "saguaro/decode_attention.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cephes_exp.hpp"
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

// The max of the scores (exact in any order).
float max_of(const float* s, int64_t L) {
  float m = s[0];
  for (int64_t t = 1; t < L; ++t) m = std::max(m, s[t]);
  return m;
}

// The softmax weights' sum in t order (the same on every path).
float sum_in_order(const float* s, int64_t L) {
  float z = 0.f;
  for (int64_t t = 0; t < L; ++t) z += s[t];
  return z;
}

// The shared second half of a (row, head): softmax weights in place (cephes_exp.hpp's exp), their sum.
float softmax_scalar(float* s, int64_t L) {
  const float m = max_of(s, L);
  for (int64_t t = 0; t < L; ++t) s[t] = cephes::exp_ref(s[t] - m);
  return sum_in_order(s, L);
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
  const float z = softmax_scalar(s, L);
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

// q . k_t of one position: D / 8 FMAs into 8 lanes, then the fixed 8-lane sum.
__attribute__((target("avx2,fma"), always_inline)) inline float dot_avx2(const float* q, const uint16_t* kt, int64_t D) {
  alignas(32) float lanes[kLanes];
  __m256 acc = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; d += kLanes) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), widen8(kt + d), acc);
  _mm256_store_ps(lanes, acc);
  return fixed_hsum(lanes);
}

__attribute__((target("avx2,fma"))) float softmax_avx2(float* s, int64_t L) {
  const float m = max_of(s, L);
  const __m256 mv = _mm256_set1_ps(m);
  int64_t t = 0;
  for (; t + kLanes <= L; t += kLanes)
    _mm256_storeu_ps(s + t, cephes::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + t), mv)));
  for (; t < L; ++t) s[t] = cephes::exp_ref(s[t] - m);
  return sum_in_order(s, L);
}

// One 8- or 16-lane block [d0, d0 + 8 W) of the outputs of C heads: o[c][d] = fma chain over t in
// order of p_c,t * v[t, d]. Each v row is widened once for the C heads.
template <int C, int W>
__attribute__((target("avx2,fma"), always_inline)) inline void pv_block(const uint16_t* v, const Visible& vis, int64_t D,
                                                                       int64_t d0, const float* s, int64_t ls, float* o) {
  __m256 acc[W][C];
  for (int w = 0; w < W; ++w)
    for (int c = 0; c < C; ++c) acc[w][c] = _mm256_setzero_ps();
  for (int64_t t = 0; t < vis.count; ++t) {
    const uint16_t* vt = v + vis.slot(t) * D + d0;
    __m256 vw[W];
    for (int w = 0; w < W; ++w) vw[w] = widen8(vt + 8 * w);
    for (int c = 0; c < C; ++c) {
      const __m256 p = _mm256_set1_ps(s[c * ls + t]);
      for (int w = 0; w < W; ++w) acc[w][c] = _mm256_fmadd_ps(p, vw[w], acc[w][c]);
    }
  }
  for (int c = 0; c < C; ++c)
    for (int w = 0; w < W; ++w) _mm256_storeu_ps(o + c * D + d0 + 8 * w, acc[w][c]);
}

// C heads that share a KV head (grouped-query), two positions at a time: each k and v row is widened
// from bf16 once for all C heads (the widening, not the FMAs, bounded one head at a time), and the
// 2 C dot products are independent FMA chains. Every head's operations are those of head_scalar.
// q [C][D], s [C][ls] scratch, o [C][D] scratch, out: each head's bf16 output.
template <int C>
__attribute__((target("avx2,fma"))) void heads_avx2(const float* q, const uint16_t* k, const uint16_t* v,
                                                   const Visible& vis, int64_t D, float scale, float* s, int64_t ls,
                                                   float* o, uint16_t* const* out) {
  const int64_t L = vis.count;
  int64_t t = 0;
  for (; t + 2 <= L; t += 2) {
    const uint16_t* k0 = k + vis.slot(t) * D;
    const uint16_t* k1 = k + vis.slot(t + 1) * D;
    __m256 a0[C], a1[C];
    for (int c = 0; c < C; ++c) a0[c] = a1[c] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; d += kLanes) {
      const __m256 w0 = widen8(k0 + d), w1 = widen8(k1 + d);
      for (int c = 0; c < C; ++c) {
        const __m256 qd = _mm256_loadu_ps(q + c * D + d);
        a0[c] = _mm256_fmadd_ps(qd, w0, a0[c]);
        a1[c] = _mm256_fmadd_ps(qd, w1, a1[c]);
      }
    }
    alignas(32) float lanes[2][kLanes];
    for (int c = 0; c < C; ++c) {
      _mm256_store_ps(lanes[0], a0[c]);
      _mm256_store_ps(lanes[1], a1[c]);
      s[c * ls + t] = fixed_hsum(lanes[0]) * scale;
      s[c * ls + t + 1] = fixed_hsum(lanes[1]) * scale;
    }
  }
  for (; t < L; ++t)
    for (int c = 0; c < C; ++c) s[c * ls + t] = dot_avx2(q + c * D, k + vis.slot(t) * D, D) * scale;
  float z[C];
  for (int c = 0; c < C; ++c) z[c] = softmax_avx2(s + c * ls, L);
  int64_t d0 = 0;
  for (; d0 + 2 * kLanes <= D; d0 += 2 * kLanes) pv_block<C, 2>(v, vis, D, d0, s, ls, o);
  if (d0 < D) pv_block<C, 1>(v, vis, D, d0, s, ls, o);  // D % 16 == 8
  for (int c = 0; c < C; ++c)
    for (int64_t d = 0; d < D; ++d) out[c][d] = float_to_bf16(o[c * D + d] / z[c]);
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

  // Work items are (row, KV head): the group of query heads that reads the same K and V.
  const int64_t group = H / Hkv, pairs = n * H, items = n * Hkv;
  auto run = [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scratch;  // the group's q rows, scores and output accumulators
    scratch.resize(static_cast<size_t>(group * (D + max_len + D)));
    float* qf = scratch.data();
    float* s = qf + group * D;
    float* o = s + group * max_len;
    thread_local std::vector<uint16_t*> dst;
    dst.resize(static_cast<size_t>(group));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = i / Hkv, kh = i % Hkv;
      const Visible vis = visible(row);
      for (int64_t c = 0; c < group; ++c) {
        const uint16_t* qr = q + row * q_row_stride + (kh * group + c) * D;
        for (int64_t d = 0; d < D; ++d) qf[c * D + d] = bf16_to_float(qr[d]);
        dst[static_cast<size_t>(c)] = out + (row * H + kh * group + c) * D;
      }
      const uint16_t* k = keys + kh * capacity * D;
      const uint16_t* v = values + kh * capacity * D;
#ifdef SAGUARO_ATTENTION_X86
      if (use_avx2) {
        for (int64_t c0 = 0; c0 < group; c0 += 4) {  // up to 4 heads at a time: 16 ymm registers
          float* qc = qf + c0 * D;
          float* sc = s + c0 * max_len;
          uint16_t* const* oc = dst.data() + c0;
          switch (std::min<int64_t>(4, group - c0)) {
            case 1: heads_avx2<1>(qc, k, v, vis, D, scale, sc, max_len, o, oc); break;
            case 2: heads_avx2<2>(qc, k, v, vis, D, scale, sc, max_len, o, oc); break;
            case 3: heads_avx2<3>(qc, k, v, vis, D, scale, sc, max_len, o, oc); break;
            default: heads_avx2<4>(qc, k, v, vis, D, scale, sc, max_len, o, oc); break;
          }
        }
        continue;
      }
#endif
      for (int64_t c = 0; c < group; ++c)
        head_scalar(qf + c * D, k, v, vis, D, scale, s, o, dst[static_cast<size_t>(c)]);
    }
  };
  // hand out (row, KV head) items only when there is enough work to pay for waking the pool
  const int64_t work = pairs * max_len * D;
  const int parts = static_cast<int>(std::min<int64_t>({threads, items, std::max<int64_t>(1, work / (1 << 18))}));
  if (parts > 1) {
    const int64_t per = (items + parts - 1) / parts;
    const std::function<void(int)> job = [&](int p) { run(std::min(items, p * per), std::min(items, (p + 1) * per)); };
    if (detail::ColumnPool::instance().try_run(parts, job)) return;
  }
  run(0, items);
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
