// SwiGLU's silu(gate) * up on bf16 rows (include/saguaro/silu_mul.hpp).
#include "saguaro/silu_mul.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "cephes_exp.hpp"
#include "saguaro/small_gemm.hpp"  // bf16 <-> float

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 intrinsics as "may be used uninitialized";
// every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SAGUARO_SILU_X86 1
#endif

namespace saguaro {

namespace {

using cephes::exp_ref;

void silu_mul_scalar(const uint16_t* g, const uint16_t* u, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = bf16_to_float(g[i]);
    const float s = bf16_to_float(float_to_bf16(x / (1.f + exp_ref(-x))));
    out[i] = float_to_bf16(s * bf16_to_float(u[i]));
  }
}

#ifdef SAGUARO_SILU_X86

#define SAGUARO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define SAGUARO_AVX2 __attribute__((target("avx2,fma")))

using cephes::exp16;
using cephes::exp8;

// bf16 bits [16] -> fp32 lanes, and fp32 lanes -> their bf16 rounding (nearest even; NaNs are not kept
// apart: a NaN gate gives some NaN)
SAGUARO_AVX512 inline __m512 widen16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
SAGUARO_AVX512 inline __m512i round_bits16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  return _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
}

SAGUARO_AVX512 void silu_mul_avx512(const uint16_t* g, const uint16_t* u, int64_t n, uint16_t* out) {
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = widen16(g + i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    const __m512 s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.f), e));
    const __m512 sb = _mm512_castsi512_ps(_mm512_and_si512(round_bits16(s), high));
    const __m512i p = round_bits16(_mm512_mul_ps(sb, widen16(u + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(p, 16)));
  }
  silu_mul_scalar(g + i, u + i, n - i, out + i);
}

SAGUARO_AVX2 inline __m256 widen8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
SAGUARO_AVX2 inline __m256i round_bits8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
}

SAGUARO_AVX2 void silu_mul_avx2(const uint16_t* g, const uint16_t* u, int64_t n, uint16_t* out) {
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = widen8(g + i);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    const __m256 s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.f), e));
    const __m256 sb = _mm256_castsi256_ps(_mm256_and_si256(round_bits8(s), high));
    const __m256i p = _mm256_srli_epi32(round_bits8(_mm256_mul_ps(sb, widen8(u + i))), 16);
    // the 8 lanes' low halves into 8 uint16: pack within 128-bit lanes, then join them
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(p, p), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  silu_mul_scalar(g + i, u + i, n - i, out + i);
}

#endif  // SAGUARO_SILU_X86

}  // namespace

void silu_mul_bf16(const uint16_t* gate_up, int64_t M, int64_t I, uint16_t* out, CpuIsa isa) {
  if (M < 1 || I < 1)
    throw std::invalid_argument("silu_mul_bf16: needs M >= 1 and I >= 1, got " + std::to_string(M) + " x " +
                                std::to_string(I));
  if (gate_up == nullptr || out == nullptr) throw std::invalid_argument("silu_mul_bf16: null pointer");
  for (int64_t m = 0; m < M; ++m) {
    const uint16_t* g = gate_up + m * 2 * I;
    uint16_t* o = out + m * I;
#ifdef SAGUARO_SILU_X86
    if (isa >= CpuIsa::kAvx512) { silu_mul_avx512(g, g + I, I, o); continue; }
    if (isa >= CpuIsa::kAvx2) { silu_mul_avx2(g, g + I, I, o); continue; }
#endif
    silu_mul_scalar(g, g + I, I, o);
  }
}

}  // namespace saguaro
