// The AVX2 path of the quantized GEMM (pmaddubsw + pmaddwd integer dot products), compiled with a
// function target attribute and run only when cpu_isa_supported() reports AVX2.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "quant_simd.hpp"

namespace saguaro::quant {

#ifdef SAGUARO_QUANT_X86

namespace {

#define SAGUARO_AVX2 __attribute__((target("avx2,fma,f16c")))

// 8 int32 lanes whose sum is Σ w a over one 32-value kind B block (without the offset for Q5_0; Q8_0
// holds signed values: |w| times a with w's sign, no offset).
SAGUARO_TARGET_AVX2 __m256i dot_b(bool signed_w, const uint8_t* q, const int8_t* aq) {
  const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq));
  const __m256i p = signed_w ? _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
                             : _mm256_maddubs_epi16(w, a);
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

// The 32 quants of sub-block sb (values 32 sb .. 32 sb + 31) of a K-quant super-block as u8.
SAGUARO_TARGET_AVX2 __m256i quants_a(QuantType t, const uint8_t* blk, int sb) {
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  if (t == QuantType::kQ4_K) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16 + 32 * (sb / 2)));
    return _mm256_and_si256(sb % 2 ? _mm256_srli_epi16(v, 4) : v, lo4);
  }
  const int h = sb / 4, part = sb % 4;  // Q6_K: half h, 32 values of ql (low or high half), 2 bits of qh
  const __m256i ql = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * h + 32 * (part % 2)));
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
  const __m256i low = _mm256_and_si256(part / 2 ? _mm256_srli_epi16(ql, 4) : ql, lo4);
  return _mm256_or_si256(low, simd::q6_high(qh, 2 * part, _mm256_set1_epi8(3)));
}

// R rows (R <= 4) of one column over all super-blocks (y: the tile's first output). Sub-block by
// sub-block, each 32 weights are unpacked once into a register and used by the R rows; the rows' sums
// are reduced together and stepped as vector lanes (each lane kind_a_step's exact sequence).
template <int R>
SAGUARO_AVX2 void tile_a(QuantType t, const uint8_t* row, int64_t bb, const QuantActivations& a, int64_t m0, float* y,
                         int64_t ldy) {
  const int64_t K = a.K, nb = K / kSuper;
  __m128 acc = _mm_setzero_ps();
  float acc1 = 0.f;  // R == 1
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * bb;
    _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * bb), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * bb + 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * bb + 128), _MM_HINT_T0);
    const simd::ScalesA s = simd::scales_a(t, blk);
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), s.sc);
    __m256i accv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) accv[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int sb = 0; sb < 8; ++sb) {
      const __m256i q = quants_a(t, blk, sb);
      const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * sb + 1]), _mm_set1_epi16(sc[2 * sb]));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.row_q(m0 + r) + b * kSuper + 32 * sb));
        accv[r] = _mm256_add_epi32(accv[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), scv));
      }
    }
    __m256i v[8];
    alignas(16) float da[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      v[2 * r] = accv[r];
      v[2 * r + 1] = _mm256_madd_epi16(
          s.mn, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsum16.data() + (m0 + r) * (K / 16) + b * 16)));
      da[r] = a.row_d(m0 + r)[b];
    }
    if constexpr (R == 1) {  // a decode: one pair of sums, the scalar step
      int32_t isum, imin;
      simd::sum_pair(v[0], v[1], isum, imin);
      acc1 = kind_a_step(acc1, s.d, s.dmin, da[0], isum, imin);
      continue;
    }
#pragma GCC unroll 4
    for (int r = R; r < 4; ++r) v[2 * r] = v[2 * r + 1] = _mm256_setzero_si256();
    // [isum0, imin0, .., isum3, imin3] -> isum[4], imin[4]
    const __m256i sums = _mm256_permutevar8x32_epi32(simd::transpose_sum8(v), _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    const __m128 isum = _mm_cvtepi32_ps(_mm256_castsi256_si128(sums));
    const __m128 imin = _mm_cvtepi32_ps(_mm256_extracti128_si256(sums, 1));
    const __m128 dav = _mm_load_ps(da);
    acc = _mm_fmadd_ps(_mm_mul_ps(_mm_set1_ps(s.d), dav), isum, acc);
    acc = _mm_fmadd_ps(_mm_xor_ps(_mm_mul_ps(_mm_set1_ps(s.dmin), dav), _mm_set1_ps(-0.f)), imin, acc);
  }
  if constexpr (R == 1) {
    y[0] = acc1;
  } else {
    alignas(16) float out[4];
    _mm_store_ps(out, acc);
    for (int r = 0; r < R; ++r) y[r * ldy] = out[r];
  }
}

SAGUARO_AVX2 void columns_a(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                            int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, bb = quant_block_bytes(t);
  const int64_t tiles = (M + 3) / 4, per = (M + tiles - 1) / tiles;  // row tiles of <= 4, as even as possible
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w + n * row_bytes;
    for (int64_t m0 = 0; m0 < M; m0 += per) {
      float* yo = y + m0 * ldy + n;
      switch (std::min<int64_t>(per, M - m0)) {
        case 1: tile_a<1>(t, row, bb, a, m0, yo, ldy); break;
        case 2: tile_a<2>(t, row, bb, a, m0, yo, ldy); break;
        case 3: tile_a<3>(t, row, bb, a, m0, yo, ldy); break;
        default: tile_a<4>(t, row, bb, a, m0, yo, ldy); break;
      }
    }
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
