// The activation rows quantized to int8 per block (quant_formats.hpp's contract) on the CPU's vector path.
//
// Why: the reference routine calls fmaxf and nearbyintf per value (libm calls: the baseline build has no
// SSE4.1 rounding), which cost a 16-row tree step of the 0.5B draft ~15 ms of its ~130: more than some
// of its projections. These paths give the same bits: max is exact in any order, then one IEEE multiply,
// a round-half-even and a clamp per value, as the reference. maxps returns its second operand when the
// first is NaN, the reference's fmax ignoring NaN likewise.
#include <cmath>

#include "quant_formats.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 intrinsics as "may be used uninitialized";
// every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SAGUARO_QUANTIZE_X86 1
#endif

namespace saguaro::quant {

namespace {

#ifdef SAGUARO_QUANTIZE_X86

#define SAGUARO_Q_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define SAGUARO_Q_AVX2 __attribute__((target("avx2,fma,sse4.1")))

SAGUARO_Q_AVX512 void row_avx512(const float* x, int64_t K, int64_t block, int8_t* q, float* d) {
  const __m512 lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  for (int64_t b = 0; b < K / block; ++b) {
    const float* xs = x + b * block;
    __m512 m = _mm512_setzero_ps();
    for (int64_t i = 0; i < block; i += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xs + i)), m);
    const float amax = _mm512_reduce_max_ps(m);
    const float iscale = amax > 0.f ? 127.f / amax : 0.f;
    d[b] = amax / 127.f;
    const __m512 s = _mm512_set1_ps(iscale);
    for (int64_t i = 0; i < block; i += 16) {
      const __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xs + i), s),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512 c = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // NaN -> -127, as fmax(-127, NaN)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * block + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(c)));
    }
  }
}

SAGUARO_Q_AVX2 void row_avx2(const float* x, int64_t K, int64_t block, int8_t* q, float* d) {
  const __m256 sign = _mm256_set1_ps(-0.f), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  for (int64_t b = 0; b < K / block; ++b) {
    const float* xs = x + b * block;
    __m256 m = _mm256_setzero_ps();
    for (int64_t i = 0; i < block; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xs + i)), m);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    const float iscale = amax > 0.f ? 127.f / amax : 0.f;
    d[b] = amax / 127.f;
    const __m256 s = _mm256_set1_ps(iscale);
    for (int64_t i = 0; i < block; i += 8) {
      const __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xs + i), s),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i n = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
      const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + b * block + i), _mm_packs_epi16(w, w));
    }
  }
}

#endif

}  // namespace

void quantize_activations(const float* x, int64_t M, int64_t K, int64_t block, QuantActivations& a, CpuIsa isa) {
#ifdef SAGUARO_QUANTIZE_X86
  if (isa != CpuIsa::kScalar) {
    size_activations(M, K, block, a);
    for (int64_t m = 0; m < M; ++m) {
      int8_t* q = a.q.data() + m * K;
      float* d = a.d.data() + m * (K / block);
      if (isa == CpuIsa::kAvx512) row_avx512(x + m * K, K, block, q, d);
      else row_avx2(x + m * K, K, block, q, d);
      activation_block_sums(m, a);
    }
    return;
  }
#endif
  (void)isa;
  quantize_activations_reference(x, M, K, block, a);
}

}  // namespace saguaro::quant
