// bf16 <-> float arrays (include/saguaro/bf16_convert.hpp).
#include "saguaro/bf16_convert.hpp"

#include "saguaro/cpu_features.hpp"
#include "saguaro/small_gemm.hpp"  // the scalar conversions, whose bits every path gives

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 intrinsics as "may be used uninitialized";
// every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SAGUARO_BF16_X86 1
#endif

namespace saguaro {

namespace {

void widen_scalar(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_float(x[i]);
}

void narrow_scalar(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_bf16(x[i]);
}

#ifdef SAGUARO_BF16_X86

__attribute__((target("avx512f,avx512bw"))) void widen_avx512(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    _mm512_storeu_si512(y + i, _mm512_slli_epi32(h, 16));
  }
  widen_scalar(x + i, y + i, n - i);
}

// float_to_bf16 on 16 lanes: u + 0x7fff + bit 16 of u, the high half; a NaN keeps its sign and high
// bits with the quiet bit set.
__attribute__((target("avx512f,avx512bw"))) void narrow_avx512(const float* x, uint16_t* y, int64_t n) {
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x0040);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i u = _mm512_castps_si512(_mm512_loadu_ps(x + i));
    const __m512i high = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(high, one))), 16);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, abs_mask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(high, quiet));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(r));
  }
  narrow_scalar(x + i, y + i, n - i);
}

__attribute__((target("avx2"))) void widen_avx2(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm256_slli_epi32(h, 16));
  }
  widen_scalar(x + i, y + i, n - i);
}

__attribute__((target("avx2"))) void narrow_avx2(const float* x, uint16_t* y, int64_t n) {
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x0040);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m256i high = _mm256_srli_epi32(u, 16);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(high, one))), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(high, quiet), nan);
    // the 8 lanes' low halves (each < 2^16) into 8 uint16: pack within 128-bit lanes, then join them
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_castsi256_si128(packed));
  }
  narrow_scalar(x + i, y + i, n - i);
}

#endif  // SAGUARO_BF16_X86

}  // namespace

void bf16_to_floats(const uint16_t* x, float* y, int64_t n) {
#ifdef SAGUARO_BF16_X86
  const CpuIsa isa = cpu_isa_selected();
  if (isa == CpuIsa::kAvx512) return widen_avx512(x, y, n);
  if (isa == CpuIsa::kAvx2) return widen_avx2(x, y, n);
#endif
  widen_scalar(x, y, n);
}

void floats_to_bf16(const float* x, uint16_t* y, int64_t n) {
#ifdef SAGUARO_BF16_X86
  const CpuIsa isa = cpu_isa_selected();
  if (isa == CpuIsa::kAvx512) return narrow_avx512(x, y, n);
  if (isa == CpuIsa::kAvx2) return narrow_avx2(x, y, n);
#endif
  narrow_scalar(x, y, n);
}

}  // namespace saguaro
