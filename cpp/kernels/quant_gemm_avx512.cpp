// The AVX-512 VNNI path of the quantized GEMM: K-quants with pmaddubsw + vpdpwssd on 64 values per
// instruction, Q8_0 / Q5_0 with vpdpbusd (u8 weights times s8 activations, 4 products per int32 lane).
// Compiled with a function target attribute and run only when cpu_isa_supported() reports AVX-512.
#include <stdexcept>
#include <vector>

#include "quant_simd.hpp"

namespace saguaro::quant {

#ifdef SAGUARO_QUANT_X86

namespace {

#define SAGUARO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define SAGUARO_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"), always_inline)) inline

SAGUARO_TARGET_AVX512 void dot_a(const UnpackedA& u, const int8_t* aq, const int16_t* bsum16, int32_t& isum,
                                 int32_t& imin) {
  __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512i p = _mm512_maddubs_epi16(_mm512_load_si512(u.q + 64 * c), _mm512_loadu_si512(aq + 64 * c));
    acc = _mm512_dpwssd_epi32(acc, p, _mm512_load_si512(u.scv + 32 * c));
  }
  const __m256i acc8 = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
  const __m256i mins = _mm256_madd_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(u.mn)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsum16)));
  simd::sum_pair(acc8, mins, isum, imin);
}

SAGUARO_AVX512 void columns_a(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a,
                              int64_t n0, int64_t n1, float* y, int64_t ldy) {
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

SAGUARO_AVX512 void columns_b(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a,
                              int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, K = a.K, bb = quant_block_bytes(t), nblocks = K / kSmall;
  const int off = offset_b(t);  // weights are u8 here: Q8_0 stored as value + 128
  thread_local std::vector<float> lanes;
  lanes.resize(static_cast<size_t>(M * kGroup));
  UnpackedB u;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(lanes.begin(), lanes.end(), 0.f);
    const uint8_t* row = w + n * row_bytes;
    for (int64_t b0 = 0; b0 < nblocks; b0 += kGroup) {
      const int nb = static_cast<int>(std::min<int64_t>(kGroup, nblocks - b0));
      for (int j = 0; j < nb; ++j) u.d[j] = simd::unpack_b(t, row + (b0 + j) * bb, u.q + kSmall * j, true);
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* aq = a.row_q(m) + b0 * kSmall;
        const int32_t* bs = a.bsum32.data() + m * nblocks + b0;
        const float* da = a.row_d(m) + b0;
        float* lane = lanes.data() + m * kGroup;
        if (nb == kGroup) {
          __m256i v[8];
#pragma GCC unroll 4
          for (int c = 0; c < 4; ++c) {  // two blocks per vpdpbusd
            const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_load_si512(u.q + 64 * c),
                                                  _mm512_loadu_si512(aq + 64 * c));
            v[2 * c] = _mm512_castsi512_si256(s);
            v[2 * c + 1] = _mm512_extracti64x4_epi64(s, 1);
          }
          const __m256i bsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs));
          const __m256i isum = _mm256_sub_epi32(simd::transpose_sum8(v), _mm256_mullo_epi32(bsv, _mm256_set1_epi32(off)));
          const __m256 s = _mm256_mul_ps(_mm256_load_ps(u.d), _mm256_loadu_ps(da));
          _mm256_storeu_ps(lane, _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), _mm256_loadu_ps(lane)));
        } else {
          for (int j = 0; j < nb; ++j) {
            const __m256i d = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(), _mm256_load_si256(reinterpret_cast<const __m256i*>(u.q + kSmall * j)),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + kSmall * j)));
            const int32_t isum = simd::sum8(d) - off * bs[j];
            lane[j] = kind_b_lane_step(lane[j], u.d[j], da[j], isum);
          }
        }
      }
    }
    for (int64_t m = 0; m < M; ++m) y[m * ldy + n] = kind_b_reduce(lanes.data() + m * kGroup);
  }
}

}  // namespace

void columns_avx512(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                    int64_t n1, float* y, int64_t ldy) {
  if (is_kquant(t)) columns_a(t, w, row_bytes, a, n0, n1, y, ldy);
  else columns_b(t, w, row_bytes, a, n0, n1, y, ldy);
}

#else

void columns_avx512(QuantType, const uint8_t*, int64_t, const QuantActivations&, int64_t, int64_t, float*, int64_t) {
  throw std::logic_error("quant_gemm: the AVX-512 path is not compiled on this architecture");
}

#endif

}  // namespace saguaro::quant
