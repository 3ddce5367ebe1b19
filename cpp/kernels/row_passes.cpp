// The whole-row passes of the CPU twins (row_primitives.hpp): the scan (maximum, finite count, NaN),
// a sampled row's temperature weights and their sum, the normalisation into fp32 probabilities, and
// the search past values a full top-k buffer would skip.
// A vocabulary row is 151936 values, and each pass ran scalar: a sampled row took ~2 ms, which a
// 16-branch draft tree step pays 16 times. Each path gives the scalar path's bits: the scan's results
// are exact, the weights use exp_f64 (the same operations everywhere), the sum keeps 8 lanes in one
// fixed order on every path, and a division and a conversion round the same everywhere.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "exp_f64.hpp"
#include "row_primitives.hpp"

#ifdef SAGUARO_EXP_F64_X86
// GCC 12 reports the undefined source inside some AVX-512 conversion and reduction intrinsics as
// (maybe) used uninitialized; every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace saguaro::detail {

namespace {

constexpr int kLanes = 8;

// The 8 lanes of lane_sum reduced in its fixed order.
inline double reduce_lanes(const double (&l)[kLanes]) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

inline double weight_ref(float v, double max, double t) {
  return exp_f64::exp_ref((static_cast<double>(v) - max) / t);
}

// The scan of the values seen so far (vectorised paths: their lanes reduced, then the tail).
struct ScanSoFar {
  float best = -std::numeric_limits<float>::infinity();
  int64_t finite = 0;
  bool nan = false;
};

// Adds logits [from, to) to the scan, one value at a time.
void scan_values(const float* logits, int64_t from, int64_t to, ScanSoFar& so) {
  for (int64_t i = from; i < to; ++i) {
    const float v = logits[i];
    so.best = v > so.best ? v : so.best;  // NaN never wins a comparison
    so.finite += (std::fabs(v) < std::numeric_limits<float>::infinity()) ? 1 : 0;
    so.nan |= v != v;
  }
}

// The first id in [from, vocab) holding `best`, or -1.
int32_t first_equal_scalar(const float* logits, int64_t from, int64_t vocab, float best) {
  for (int64_t i = from; i < vocab; ++i)
    if (logits[i] == best) return static_cast<int32_t>(i);
  return -1;
}

// The scan's results; first_of(best) finds the argmax (the lowest id holding the maximum).
template <class FirstOf>
RowScan finish_scan(const ScanSoFar& so, FirstOf first_of) {
  RowScan s;
  s.nan = so.nan;
  s.pos_inf = so.best == std::numeric_limits<float>::infinity();
  s.finite = so.finite;
  s.max = so.best;
  if (so.finite > 0 && !s.pos_inf) s.argmax = first_of(so.best);
  return s;
}

RowScan scan_scalar(const float* logits, int64_t vocab) {
  ScanSoFar so;
  scan_values(logits, 0, vocab, so);
  return finish_scan(so, [&](float best) { return first_equal_scalar(logits, 0, vocab, best); });
}

double weights_scalar(const float* logits, int64_t vocab, double max, double t, double* w) {
  double lane[kLanes] = {};
  for (int64_t i = 0; i < vocab; ++i) {
    w[i] = weight_ref(logits[i], max, t);
    lane[i % kLanes] += w[i];
  }
  return reduce_lanes(lane);
}

double sum_scalar(const double* w, int64_t n) {
  double lane[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) lane[i % kLanes] += w[i];
  return reduce_lanes(lane);
}

void normalise_scalar(const double* w, int64_t n, double total, float* probs) {
  for (int64_t i = 0; i < n; ++i) probs[i] = static_cast<float>(w[i] / total);
}

int64_t above_scalar(const float* x, int64_t from, int64_t n, float threshold) {
  for (int64_t i = from; i < n; ++i)
    if (x[i] > threshold) return i;
  return n;
}

#ifdef SAGUARO_EXP_F64_X86

#define SAGUARO_ROW_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define SAGUARO_ROW_AVX2 __attribute__((target("avx2,fma")))

// The first id holding `best` (the scan saw it).
SAGUARO_ROW_AVX512 int32_t first_of_avx512(const float* logits, int64_t vocab, float best) {
  const __m512 b = _mm512_set1_ps(best);
  int64_t i = 0;
  for (; i + 16 <= vocab; i += 16) {
    const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(logits + i), b, _CMP_EQ_OQ);
    if (hit) return static_cast<int32_t>(i + __builtin_ctz(hit));
  }
  return first_equal_scalar(logits, i, vocab, best);
}

SAGUARO_ROW_AVX512 RowScan scan_avx512(const float* logits, int64_t vocab) {
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t finite = 0;
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 16 <= vocab; i += 16) {
    const __m512 v = _mm512_loadu_ps(logits + i);
    best = _mm512_max_ps(v, best);  // a NaN in v keeps best (the second operand)
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
    finite += __builtin_popcount(_mm512_cmp_ps_mask(a, inf, _CMP_LT_OQ));
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  ScanSoFar so{_mm512_reduce_max_ps(best), finite, nan != 0};
  scan_values(logits, i, vocab, so);
  return finish_scan(so, [&](float m) { return first_of_avx512(logits, vocab, m); });
}

// 8 weights at i (fp32 logits widened exactly): exp((v - max) / t)
SAGUARO_ROW_AVX512 inline __m512d weights8(const float* logits, int64_t i, __m512d max, __m512d t) {
  const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(logits + i));
  return exp_f64::exp8(_mm512_div_pd(_mm512_sub_pd(v, max), t));
}

SAGUARO_ROW_AVX512 inline double finish_lanes512(__m512d acc, int64_t i, int64_t n, const double* w) {
  alignas(64) double lane[kLanes];
  _mm512_store_pd(lane, acc);
  for (; i < n; ++i) lane[i % kLanes] += w[i];  // i starts at a multiple of 8
  return reduce_lanes(lane);
}

SAGUARO_ROW_AVX512 double weights_avx512(const float* logits, int64_t vocab, double max, double t, double* w) {
  const __m512d vmax = _mm512_set1_pd(max), vt = _mm512_set1_pd(t);
  __m512d acc = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    const __m512d e = weights8(logits, i, vmax, vt);
    _mm512_storeu_pd(w + i, e);
    acc = _mm512_add_pd(acc, e);
  }
  for (int64_t j = i; j < vocab; ++j) w[j] = weight_ref(logits[j], max, t);
  return finish_lanes512(acc, i, vocab, w);
}

SAGUARO_ROW_AVX512 double sum_avx512(const double* w, int64_t n) {
  __m512d acc = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = _mm512_add_pd(acc, _mm512_loadu_pd(w + i));
  return finish_lanes512(acc, i, n, w);
}

SAGUARO_ROW_AVX512 void normalise_avx512(const double* w, int64_t n, double total, float* probs) {
  const __m512d vt = _mm512_set1_pd(total);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    _mm256_storeu_ps(probs + i, _mm512_cvtpd_ps(_mm512_div_pd(_mm512_loadu_pd(w + i), vt)));
  normalise_scalar(w + i, n - i, total, probs + i);
}

SAGUARO_ROW_AVX512 int64_t above_avx512(const float* x, int64_t from, int64_t n, float threshold) {
  const __m512 t = _mm512_set1_ps(threshold);
  int64_t i = from;
  for (; i + 16 <= n; i += 16) {
    const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), t, _CMP_GT_OQ);
    if (hit) return i + __builtin_ctz(hit);
  }
  return above_scalar(x, i, n, threshold);
}

SAGUARO_ROW_AVX2 int32_t first_of_avx2(const float* logits, int64_t vocab, float best) {
  const __m256 b = _mm256_set1_ps(best);
  int64_t i = 0;
  for (; i + 8 <= vocab; i += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(logits + i), b, _CMP_EQ_OQ));
    if (hit) return static_cast<int32_t>(i + __builtin_ctz(static_cast<unsigned>(hit)));
  }
  return first_equal_scalar(logits, i, vocab, best);
}

SAGUARO_ROW_AVX2 RowScan scan_avx2(const float* logits, int64_t vocab) {
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 best = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  int64_t finite = 0;
  int nan = 0;
  int64_t i = 0;
  for (; i + 8 <= vocab; i += 8) {
    const __m256 v = _mm256_loadu_ps(logits + i);
    best = _mm256_max_ps(v, best);  // a NaN in v keeps best (the second operand)
    finite += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, abs_mask), inf, _CMP_LT_OQ)));
    nan |= _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  alignas(32) float l[8];
  _mm256_store_ps(l, best);
  float m = l[0];
  for (int k = 1; k < 8; ++k) m = l[k] > m ? l[k] : m;
  ScanSoFar so{m, finite, nan != 0};
  scan_values(logits, i, vocab, so);
  return finish_scan(so, [&](float m) { return first_of_avx2(logits, vocab, m); });
}

SAGUARO_ROW_AVX2 int64_t above_avx2(const float* x, int64_t from, int64_t n, float threshold) {
  const __m256 t = _mm256_set1_ps(threshold);
  int64_t i = from;
  for (; i + 8 <= n; i += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_GT_OQ));
    if (hit) return i + __builtin_ctz(static_cast<unsigned>(hit));
  }
  return above_scalar(x, i, n, threshold);
}

// Lanes 0-3 in lo, 4-7 in hi: the AVX-512 path's 8 lanes as two halves.
SAGUARO_ROW_AVX2 inline double finish_lanes256(__m256d lo, __m256d hi, int64_t i, int64_t n, const double* w) {
  alignas(32) double lane[kLanes];
  _mm256_store_pd(lane, lo);
  _mm256_store_pd(lane + 4, hi);
  for (; i < n; ++i) lane[i % kLanes] += w[i];
  return reduce_lanes(lane);
}

SAGUARO_ROW_AVX2 inline __m256d weights4(const float* logits, int64_t i, __m256d max, __m256d t) {
  const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(logits + i));
  return exp_f64::exp4(_mm256_div_pd(_mm256_sub_pd(v, max), t));
}

SAGUARO_ROW_AVX2 double weights_avx2(const float* logits, int64_t vocab, double max, double t, double* w) {
  const __m256d vmax = _mm256_set1_pd(max), vt = _mm256_set1_pd(t);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= vocab; i += kLanes) {
    const __m256d a = weights4(logits, i, vmax, vt), b = weights4(logits, i + 4, vmax, vt);
    _mm256_storeu_pd(w + i, a);
    _mm256_storeu_pd(w + i + 4, b);
    lo = _mm256_add_pd(lo, a);
    hi = _mm256_add_pd(hi, b);
  }
  for (int64_t j = i; j < vocab; ++j) w[j] = weight_ref(logits[j], max, t);
  return finish_lanes256(lo, hi, i, vocab, w);
}

SAGUARO_ROW_AVX2 double sum_avx2(const double* w, int64_t n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    lo = _mm256_add_pd(lo, _mm256_loadu_pd(w + i));
    hi = _mm256_add_pd(hi, _mm256_loadu_pd(w + i + 4));
  }
  return finish_lanes256(lo, hi, i, n, w);
}

SAGUARO_ROW_AVX2 void normalise_avx2(const double* w, int64_t n, double total, float* probs) {
  const __m256d vt = _mm256_set1_pd(total);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(probs + i, _mm256_cvtpd_ps(_mm256_div_pd(_mm256_loadu_pd(w + i), vt)));
  normalise_scalar(w + i, n - i, total, probs + i);
}

#endif  // SAGUARO_EXP_F64_X86

}  // namespace

RowScan scan_row(const float* logits, int64_t vocab, CpuIsa isa) {
#ifdef SAGUARO_EXP_F64_X86
  if (isa >= CpuIsa::kAvx512) return scan_avx512(logits, vocab);
  if (isa >= CpuIsa::kAvx2) return scan_avx2(logits, vocab);
#endif
  return scan_scalar(logits, vocab);
}

double temperature_weights(const float* logits, int64_t vocab, double max, double t, double* w, CpuIsa isa) {
#ifdef SAGUARO_EXP_F64_X86
  if (isa >= CpuIsa::kAvx512) return weights_avx512(logits, vocab, max, t, w);
  if (isa >= CpuIsa::kAvx2) return weights_avx2(logits, vocab, max, t, w);
#endif
  return weights_scalar(logits, vocab, max, t, w);
}

double lane_sum(const double* w, int64_t n, CpuIsa isa) {
#ifdef SAGUARO_EXP_F64_X86
  if (isa >= CpuIsa::kAvx512) return sum_avx512(w, n);
  if (isa >= CpuIsa::kAvx2) return sum_avx2(w, n);
#endif
  return sum_scalar(w, n);
}

void normalise(const double* w, int64_t n, double total, float* probs, CpuIsa isa) {
#ifdef SAGUARO_EXP_F64_X86
  if (isa >= CpuIsa::kAvx512) return normalise_avx512(w, n, total, probs);
  if (isa >= CpuIsa::kAvx2) return normalise_avx2(w, n, total, probs);
#endif
  normalise_scalar(w, n, total, probs);
}

int64_t first_above(const float* x, int64_t from, int64_t n, float threshold, CpuIsa isa) {
#ifdef SAGUARO_EXP_F64_X86
  if (isa >= CpuIsa::kAvx512) return above_avx512(x, from, n, threshold);
  if (isa >= CpuIsa::kAvx2) return above_avx2(x, from, n, threshold);
#endif
  return above_scalar(x, from, n, threshold);
}

}  // namespace saguaro::detail
