// exp in fp64 with the same operations on every path (scalar with std::fma, AVX2+FMA 4 lanes, AVX-512
// 8 lanes), so the row kernels that use it (row_passes.cpp: a sampled row's temperature weights) give
// the same bits whichever path runs. glibc's exp is correctly rounded but scalar, and it was ~60% of
// processing a sampled 151936-token row.
//
// Range reduction by ln 2 in two parts (fdlibm's split, exact for |n| <= 1023), the Taylor series to
// degree 13 by Horner (truncation < 5e-18 for |r| <= ln2 / 2, well under half an fp64 ulp), then 2^n
// as exponent bits (an exact product). Within ~1 ulp of the correctly rounded exp (tested).
//
// Domain: x <= 0 (a weight relative to its row's maximum) and -inf. Below -1022.5 ln 2 (~ -708.74) it
// returns 0: exp there is under 2^-1022, a weight that no fp32 probability or fp64 row total (>= 1,
// the maximum's weight) can show.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SAGUARO_EXP_F64_X86 1
#endif

namespace saguaro::exp_f64 {

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
constexpr double kFloor = -709.0;  // inputs are clamped here first: n >= -1023, whose 2^n bits are 0
// 1 / k! for k = 13 down to 2; the k = 1 and k = 0 terms are the two last fma's 1.0
constexpr double kC[12] = {1.6059043836821613e-10, 2.08767569878681e-09,  2.505210838544172e-08,
                           2.755731922398589e-07,  2.7557319223985893e-06, 2.48015873015873e-05,
                           0.0001984126984126984,  0.001388888888888889,  0.008333333333333333,
                           0.041666666666666664,   0.16666666666666666,   0.5};
// the bits of 2^n: (n + 1023) << 52; n = -1023 gives +0
constexpr int64_t kBias = 1023;
// n to int64 in the vector paths (no AVX-512DQ needed): the bits of n + 1.5 * 2^52 minus those of
// 1.5 * 2^52 are n, since that binade's ulp is 1 (|n| <= 1023)
constexpr double kMagic = 6755399441055744.0;

// The reference: every path computes these operations in this order.
inline double exp_ref(double x) {
  const double c = std::fmax(x, kFloor);
  const double n = std::nearbyint(c * kLog2e);
  double r = std::fma(n, -kLn2Hi, c);
  r = std::fma(n, -kLn2Lo, r);
  double p = kC[0];
  for (int k = 1; k < 12; ++k) p = std::fma(p, r, kC[k]);
  p = std::fma(p, r, 1.0);
  p = std::fma(p, r, 1.0);
  const uint64_t bits = static_cast<uint64_t>(static_cast<int64_t>(n) + kBias) << 52;
  double s;
  std::memcpy(&s, &bits, 8);
  return p * s;
}

#ifdef SAGUARO_EXP_F64_X86

#define SAGUARO_EXP_F64_AVX512 __attribute__((target("avx512f,fma"), always_inline))
#define SAGUARO_EXP_F64_AVX2 __attribute__((target("avx2,fma"), always_inline))

SAGUARO_EXP_F64_AVX512 inline __m512d exp8(__m512d x) {
  const __m512d c = _mm512_max_pd(x, _mm512_set1_pd(kFloor));
  const __m512d n =
      _mm512_roundscale_pd(_mm512_mul_pd(c, _mm512_set1_pd(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fmadd_pd(n, _mm512_set1_pd(-kLn2Hi), c);
  r = _mm512_fmadd_pd(n, _mm512_set1_pd(-kLn2Lo), r);
  __m512d p = _mm512_set1_pd(kC[0]);
  for (int k = 1; k < 12; ++k) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kC[k]));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  const __m512d magic = _mm512_set1_pd(kMagic);
  const __m512i ni = _mm512_sub_epi64(_mm512_castpd_si512(_mm512_add_pd(n, magic)), _mm512_castpd_si512(magic));
  const __m512i e = _mm512_slli_epi64(_mm512_add_epi64(ni, _mm512_set1_epi64(kBias)), 52);
  return _mm512_mul_pd(p, _mm512_castsi512_pd(e));
}

SAGUARO_EXP_F64_AVX2 inline __m256d exp4(__m256d x) {
  const __m256d c = _mm256_max_pd(x, _mm256_set1_pd(kFloor));
  const __m256d n =
      _mm256_round_pd(_mm256_mul_pd(c, _mm256_set1_pd(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fmadd_pd(n, _mm256_set1_pd(-kLn2Hi), c);
  r = _mm256_fmadd_pd(n, _mm256_set1_pd(-kLn2Lo), r);
  __m256d p = _mm256_set1_pd(kC[0]);
  for (int k = 1; k < 12; ++k) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kC[k]));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  const __m256d magic = _mm256_set1_pd(kMagic);
  const __m256i ni = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(n, magic)), _mm256_castpd_si256(magic));
  const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(kBias)), 52);
  return _mm256_mul_pd(p, _mm256_castsi256_pd(e));
}

#endif  // SAGUARO_EXP_F64_X86

}  // namespace saguaro::exp_f64
