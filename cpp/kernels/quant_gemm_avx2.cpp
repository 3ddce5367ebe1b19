// The AVX2 path of the quantized GEMM (pmaddubsw + pmaddwd integer dot products), compiled with a
// function target attribute and run only when cpu_isa_supported() reports AVX2.
#include <stdexcept>
#include <vector>

#include "quant_simd.hpp"

namespace saguaro::quant {

#ifdef SAGUARO_QUANT_X86

namespace {

#define SAGUARO_AVX2 __attribute__((target("avx2,fma,f16c")))

// isum and imin of one super-block against one activation row.
SAGUARO_TARGET_AVX2 void dot_a(const UnpackedA& u, const int8_t* aq, const int16_t* bsum16, int32_t& isum,
                               int32_t& imin) {
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
  for (int s = 0; s < 8; ++s) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(u.q + 32 * s)),
                                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + 32 * s)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_load_si256(reinterpret_cast<const __m256i*>(u.scv + 16 * s))));
  }
  const __m256i mins = _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(u.mn)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsum16)));
  simd::sum_pair(acc, mins, isum, imin);
}

// 8 int32 lanes whose sum is Σ w a over one 32-value kind B block (without the offset for Q5_0; Q8_0
// holds signed values: |w| times a with w's sign, no offset).
SAGUARO_TARGET_AVX2 __m256i dot_b(bool signed_w, const uint8_t* q, const int8_t* aq) {
  const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq));
  const __m256i p = signed_w ? _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
                             : _mm256_maddubs_epi16(w, a);
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

SAGUARO_AVX2 void columns_a(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                            int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, K = a.K, bb = quant_block_bytes(t);
  thread_local std::vector<float> acc;
  acc.assign(static_cast<size_t>(M), 0.f);
  UnpackedA u;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const uint8_t* row = w + n * row_bytes;
    for (int64_t b = 0; b < K / kSuper; ++b) {
      _mm_prefetch(reinterpret_cast<const char*>(row + (b + 2) * bb), _MM_HINT_T0);
      simd::unpack_a(t, row + b * bb, u);
      for (int64_t m = 0; m < M; ++m) {
        int32_t isum, imin;
        dot_a(u, a.row_q(m) + b * kSuper, a.bsum16.data() + m * (K / 16) + b * 16, isum, imin);
        acc[m] = kind_a_step(acc[m], u.d, u.dmin, a.row_d(m)[b], isum, imin);
      }
    }
    for (int64_t m = 0; m < M; ++m) y[m * ldy + n] = acc[m];
  }
}

SAGUARO_AVX2 void columns_b(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                            int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, K = a.K, bb = quant_block_bytes(t), nblocks = K / kSmall;
  const bool signed_w = t == QuantType::kQ8_0;
  const int off = signed_w ? 0 : offset_b(t);  // the sign trick needs no offset
  thread_local std::vector<float> lanes;
  lanes.resize(static_cast<size_t>(M * kGroup));
  UnpackedB u;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(lanes.begin(), lanes.end(), 0.f);
    const uint8_t* row = w + n * row_bytes;
    for (int64_t b0 = 0; b0 < nblocks; b0 += kGroup) {
      const int nb = static_cast<int>(std::min<int64_t>(kGroup, nblocks - b0));
      for (int j = 0; j < nb; ++j) u.d[j] = simd::unpack_b(t, row + (b0 + j) * bb, u.q + kSmall * j, false);
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* aq = a.row_q(m) + b0 * kSmall;
        const int32_t* bs = a.bsum32.data() + m * nblocks + b0;
        const float* da = a.row_d(m) + b0;
        float* lane = lanes.data() + m * kGroup;
        if (nb == kGroup) {
          __m256i v[8];
#pragma GCC unroll 8
          for (int j = 0; j < 8; ++j) v[j] = dot_b(signed_w, u.q + kSmall * j, aq + kSmall * j);
          __m256i isum = simd::transpose_sum8(v);
          if (off != 0)
            isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs)),
                                                             _mm256_set1_epi32(off)));
          const __m256 s = _mm256_mul_ps(_mm256_load_ps(u.d), _mm256_loadu_ps(da));
          _mm256_storeu_ps(lane, _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), _mm256_loadu_ps(lane)));
        } else {
          for (int j = 0; j < nb; ++j) {
            const int32_t isum = simd::sum8(dot_b(signed_w, u.q + kSmall * j, aq + kSmall * j)) - off * bs[j];
            lane[j] = kind_b_lane_step(lane[j], u.d[j], da[j], isum);
          }
        }
      }
    }
    for (int64_t m = 0; m < M; ++m) y[m * ldy + n] = kind_b_reduce(lanes.data() + m * kGroup);
  }
}

}  // namespace

void columns_avx2(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0, int64_t n1,
                  float* y, int64_t ldy) {
  if (is_kquant(t)) columns_a(t, w, row_bytes, a, n0, n1, y, ldy);
  else columns_b(t, w, row_bytes, a, n0, n1, y, ldy);
}

#else

void columns_avx2(QuantType, const uint8_t*, int64_t, const QuantActivations&, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("quant_gemm: the AVX2 path is not compiled on this architecture");
}

#endif

}  // namespace saguaro::quant
