// Cephes' expf with the same fp32 operations on every path (scalar with std::fma, AVX2+FMA, AVX-512),
// so a kernel that uses it gives the same bits whichever path runs: range reduction by ln 2 in two
// parts, a degree-5 polynomial, 2^n in two exact factors. Error ~1 ulp of fp32. Inputs are clamped to
// [-87.3, 88.72]: below, it returns exp(-87.3) ~ 1.2e-38 (not a subnormal or 0); above 88.72, +inf.
// Used by silu_mul.cpp (SwiGLU) and decode_attention.cpp (the softmax).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SAGUARO_CEPHES_X86 1
#endif

namespace saguaro::cephes {

// Cephes expf's constants
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
constexpr float kExpLo = -87.3f;       // exp is below fp32's normals beneath
constexpr float kExpHi = 88.7228394f;  // log(FLT_MAX): exp overflows above

// The reference: every path computes these operations in this order.
inline float exp_ref(float x) {
  const float c = std::fmin(std::fmax(x, kExpLo), kExpHi);
  const float fx = std::nearbyint(c * kLog2e);
  float r = std::fma(fx, -kLn2Hi, c);
  r = std::fma(fx, -kLn2Lo, r);
  float p = kP0;
  p = std::fma(p, r, kP1);
  p = std::fma(p, r, kP2);
  p = std::fma(p, r, kP3);
  p = std::fma(p, r, kP4);
  p = std::fma(p, r, kP5);
  const float y = std::fma(p, r * r, r) + 1.f;
  // 2^n in two exact factors: n reaches 128, beyond one fp32 power of two
  const int n = static_cast<int>(fx), n1 = n / 2, n2 = n - n1;
  uint32_t b1 = static_cast<uint32_t>(n1 + 127) << 23, b2 = static_cast<uint32_t>(n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  return x > kExpHi ? std::numeric_limits<float>::infinity() : y * s1 * s2;
}

#ifdef SAGUARO_CEPHES_X86

#define SAGUARO_CEPHES_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define SAGUARO_CEPHES_AVX2 __attribute__((target("avx2,fma")))

SAGUARO_CEPHES_AVX512 inline __m512 exp16(__m512 x) {
  const __m512 c = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(c, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(fx, _mm512_set1_ps(-kLn2Hi), c);
  r = _mm512_fmadd_ps(fx, _mm512_set1_ps(-kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.f));
  const __m512i n = _mm512_cvtps_epi32(fx);
  // n / 2 rounded toward zero, as C++'s integer division: (n + (n < 0)) >> 1
  const __m512i n1 = _mm512_srai_epi32(_mm512_add_epi32(n, _mm512_srli_epi32(n, 31)), 1);
  const __m512i n2 = _mm512_sub_epi32(n, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  const __m512 e = _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
  const __mmask16 over = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpHi), _CMP_GT_OQ);
  return _mm512_mask_mov_ps(e, over, _mm512_set1_ps(std::numeric_limits<float>::infinity()));
}

SAGUARO_CEPHES_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 c = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLo)), _mm256_set1_ps(kExpHi));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(c, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(fx, _mm256_set1_ps(-kLn2Hi), c);
  r = _mm256_fmadd_ps(fx, _mm256_set1_ps(-kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.f));
  const __m256i n = _mm256_cvtps_epi32(fx);
  const __m256i n1 = _mm256_srai_epi32(_mm256_add_epi32(n, _mm256_srli_epi32(n, 31)), 1);
  const __m256i n2 = _mm256_sub_epi32(n, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  const __m256 e = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
  const __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(kExpHi), _CMP_GT_OQ);
  return _mm256_blendv_ps(e, _mm256_set1_ps(std::numeric_limits<float>::infinity()), over);
}

#endif  // SAGUARO_CEPHES_X86

}  // namespace saguaro::cephes
