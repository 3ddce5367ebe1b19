// The AVX-512 VNNI path of the quantized GEMM: K-quants with pmaddubsw + vpdpwssd on 64 values per
// instruction, Q8_0 / Q5_0 with vpdpbusd (u8 weights times s8 activations, 4 products per int32 lane).
// Compiled with a function target attribute and run only when cpu_isa_supported() reports AVX-512.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "quant_simd.hpp"

// GCC 12 reports the undefined upper half inside _mm512_inserti64x4 as "may be used uninitialized";
// every insert here fills the half it reads.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace saguaro::quant {

#ifdef SAGUARO_QUANT_X86

namespace {

#define SAGUARO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define SAGUARO_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"), always_inline)) inline

// Values 64c .. 64c + 63 of a K-quant super-block as u8 (q in 0..63).
SAGUARO_TARGET_AVX512 __m512i quants_a(QuantType t, const uint8_t* blk, int c) {
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  if (t == QuantType::kQ4_K) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16 + 32 * c));
    const __m512i both = _mm512_inserti64x4(_mm512_zextsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    return _mm512_and_si512(both, lo4);
  }
  const int h = c / 2;
  const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
  const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h));
  __m512i hi = _mm512_inserti64x4(_mm512_zextsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
  __m512i low = ql;
  if (c % 2) {
    hi = _mm512_srli_epi16(hi, 4);
    low = _mm512_srli_epi16(ql, 4);
  }
  hi = _mm512_slli_epi16(_mm512_and_si512(hi, _mm512_set1_epi8(3)), 4);
  return _mm512_or_si512(_mm512_and_si512(low, lo4), hi);
}

// R rows (R <= 8) of one column over all super-blocks (y: the tile's first output): each block's weights are unpacked once into
// registers (4 x 64 quants, 4 scale vectors) for the R rows; the R rows' integer sums are reduced
// together (two 8-way transposes) and their float steps run as the lanes of one vector, each lane the
// exact scalar sequence of kind_a_step, so the bits are the scalar path's.
template <int R>
SAGUARO_AVX512 void tile_a(QuantType t, const uint8_t* row, int64_t bb, const QuantActivations& a, int64_t m0,
                           const __m512i (&idx)[4], float* y, int64_t ldy) {
  const int64_t K = a.K, nb = K / kSuper;
  __m256 acc = _mm256_setzero_ps();
  float acc1 = 0.f;  // R == 1
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = row + b * bb;
    _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * bb), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * bb + 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(blk + 2 * bb + 128), _MM_HINT_T0);
    const simd::ScalesA s = simd::scales_a(t, blk);
    const __m512i scz = _mm512_zextsi256_si512(s.sc);
    __m512i q[4], scv[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      q[c] = quants_a(t, blk, c);
      scv[c] = _mm512_permutexvar_epi16(idx[c], scz);
    }
    __m256i v[16];
    alignas(32) float da[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t m = m0 + r;
      const int8_t* aq = a.row_q(m) + b * kSuper;
      __m512i accv = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c)
        accv = _mm512_dpwssd_epi32(accv, _mm512_maddubs_epi16(q[c], _mm512_loadu_si512(aq + 64 * c)), scv[c]);
      v[2 * r] = _mm256_add_epi32(_mm512_castsi512_si256(accv), _mm512_extracti64x4_epi64(accv, 1));
      v[2 * r + 1] = _mm256_madd_epi16(
          s.mn, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsum16.data() + m * (K / 16) + b * 16)));
      da[r] = a.row_d(m)[b];
    }
    if constexpr (R == 1) {  // a decode: one pair of sums, the scalar step
      int32_t isum, imin;
      simd::sum_pair(v[0], v[1], isum, imin);
      acc1 = kind_a_step(acc1, s.d, s.dmin, da[0], isum, imin);
      continue;
    }
#pragma GCC unroll 8
    for (int r = R; r < 8; ++r) v[2 * r] = v[2 * r + 1] = _mm256_setzero_si256();
    // [isum0, imin0, .., isum3, imin3] and the same for rows 4..7, then split into isum[8] and imin[8]
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i lo = _mm256_permutevar8x32_epi32(simd::transpose_sum8(*reinterpret_cast<__m256i(*)[8]>(v)), order);
    const __m256i hi = R <= 4 ? _mm256_setzero_si256()
                              : _mm256_permutevar8x32_epi32(simd::transpose_sum8(*reinterpret_cast<__m256i(*)[8]>(v + 8)), order);
    const __m256 isum = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(lo, hi, 0x20));
    const __m256 imin = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(lo, hi, 0x31));
    const __m256 dav = _mm256_load_ps(da);
    // kind_a_step lane by lane: acc = fma(d * da, isum, acc); acc = fma(-(dmin * da), imin, acc)
    acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(s.d), dav), isum, acc);
    const __m256 negmin = _mm256_xor_ps(_mm256_mul_ps(_mm256_set1_ps(s.dmin), dav), _mm256_set1_ps(-0.f));
    acc = _mm256_fmadd_ps(negmin, imin, acc);
  }
  if constexpr (R == 1) {
    y[0] = acc1;
    return;
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, acc);
  for (int r = 0; r < R; ++r) y[r * ldy] = out[r];
}

SAGUARO_AVX512 void columns_a(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a,
                              int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, bb = quant_block_bytes(t);
  // lane i (an int16 pair of values 2i, 2i + 1 of chunk c) takes the scale of values 64c + 2i: 4c + i / 8
  __m512i idx[4];
  for (int c = 0; c < 4; ++c) {
    alignas(64) int16_t v[32];
    for (int i = 0; i < 32; ++i) v[i] = static_cast<int16_t>(4 * c + i / 8);
    idx[c] = _mm512_load_si512(v);
  }
  // row tiles of at most 8, as even as possible (M = 10 runs as 5 + 5)
  const int64_t tiles = (M + 7) / 8, per = (M + tiles - 1) / tiles;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w + n * row_bytes;
    for (int64_t m0 = 0; m0 < M; m0 += per) {
      float* yo = y + m0 * ldy + n;
      switch (std::min<int64_t>(per, M - m0)) {
        case 1: tile_a<1>(t, row, bb, a, m0, idx, yo, ldy); break;
        case 2: tile_a<2>(t, row, bb, a, m0, idx, yo, ldy); break;
        case 3: tile_a<3>(t, row, bb, a, m0, idx, yo, ldy); break;
        case 4: tile_a<4>(t, row, bb, a, m0, idx, yo, ldy); break;
        case 5: tile_a<5>(t, row, bb, a, m0, idx, yo, ldy); break;
        case 6: tile_a<6>(t, row, bb, a, m0, idx, yo, ldy); break;
        case 7: tile_a<7>(t, row, bb, a, m0, idx, yo, ldy); break;
        default: tile_a<8>(t, row, bb, a, m0, idx, yo, ldy); break;
      }
    }
  }
}

// Two 32-value blocks (j, j + 1) of a kind B group as u8 in one register (Q8_0 as value + 128).
SAGUARO_TARGET_AVX512 __m512i quants_b(QuantType t, const uint8_t* blk, int64_t bb) {
  __m256i v[2];
  for (int i = 0; i < 2; ++i) {
    const uint8_t* p = blk + i * bb;
    if (t == QuantType::kQ5_0) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 6));
      const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(0x0f));
      v[i] = _mm256_or_si256(nib, _mm256_and_si256(simd::bytes_from_bits_32(p + 2), _mm256_set1_epi8(0x10)));
    } else {
      v[i] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)),
                              _mm256_set1_epi8(static_cast<char>(0x80)));
    }
  }
  return _mm512_inserti64x4(_mm512_zextsi256_si512(v[0]), v[1], 1);
}

SAGUARO_AVX512 void columns_b(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a,
                              int64_t n0, int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, K = a.K, bb = quant_block_bytes(t), nblocks = K / kSmall;
  const int off = offset_b(t);  // weights are u8 here: Q8_0 stored as value + 128
  const __m256i offv = _mm256_set1_epi32(off);
  thread_local std::vector<float> lanes;
  lanes.resize(static_cast<size_t>(M * kGroup));
  UnpackedB u;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(lanes.begin(), lanes.end(), 0.f);
    const uint8_t* row = w + n * row_bytes;
    int64_t b0 = 0;
    for (; b0 + kGroup <= nblocks; b0 += kGroup) {  // whole groups: weights in registers
      const uint8_t* g = row + b0 * bb;
      for (int i = 0; i < 4; ++i) _mm_prefetch(reinterpret_cast<const char*>(g + 8 * bb + 64 * i), _MM_HINT_T0);
      __m512i q[4];
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) q[c] = quants_b(t, g + 2 * c * bb, bb);
      __m128i dh = _mm_setzero_si128();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) dh = _mm_insert_epi16(dh, load_u16(g + j * bb), j);
      const __m256 dw = _mm256_cvtph_ps(dh);
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* aq = a.row_q(m) + b0 * kSmall;
        __m256i v[8];
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {  // two blocks per vpdpbusd
          const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[c], _mm512_loadu_si512(aq + 64 * c));
          v[2 * c] = _mm512_castsi512_si256(s);
          v[2 * c + 1] = _mm512_extracti64x4_epi64(s, 1);
        }
        const __m256i bsv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsum32.data() + m * nblocks + b0));
        const __m256i isum = _mm256_sub_epi32(simd::transpose_sum8(v), _mm256_mullo_epi32(bsv, offv));
        const __m256 sc = _mm256_mul_ps(dw, _mm256_loadu_ps(a.row_d(m) + b0));
        float* lane = lanes.data() + m * kGroup;
        _mm256_storeu_ps(lane, _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(isum), _mm256_loadu_ps(lane)));
      }
    }
    if (b0 < nblocks) {  // a partial group: one block at a time
      const int nb = static_cast<int>(nblocks - b0);
      for (int j = 0; j < nb; ++j) u.d[j] = simd::unpack_b(t, row + (b0 + j) * bb, u.q + kSmall * j, true);
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* aq = a.row_q(m) + b0 * kSmall;
        const int32_t* bs = a.bsum32.data() + m * nblocks + b0;
        const float* da = a.row_d(m) + b0;
        float* lane = lanes.data() + m * kGroup;
        for (int j = 0; j < nb; ++j) {
          const __m256i d = _mm256_dpbusd_epi32(
              _mm256_setzero_si256(), _mm256_load_si256(reinterpret_cast<const __m256i*>(u.q + kSmall * j)),
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(aq + kSmall * j)));
          const int32_t isum = simd::sum8(d) - off * bs[j];
          lane[j] = kind_b_lane_step(lane[j], u.d[j], da[j], isum);
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
