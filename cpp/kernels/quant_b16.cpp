// Q5_0 / Q8_0 repacked into 16-column interleaved records and their GEMM (include/saguaro/quant_b16.hpp).
#include "saguaro/quant_b16.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "column_pool.hpp"
#include "stream_prefetch.hpp"
#include "vnni_broadcast.hpp"
#include "quant_b16_layout.hpp"
#include "quant_formats.hpp"
#include "quant_simd.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 conversion intrinsics as "may be used
// uninitialized"; every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define SAGUARO_B16_X86 1
#endif

namespace saguaro {

namespace {

using quant::kGroup;
using quant::kSmall;
using quant::QuantActivations;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("quant_b16: " + what); }

using Layout = quant::B16Layout;

Layout layout(QuantType t) { return quant::b16_layout(t); }

void check(QuantType t, int64_t N, int64_t K) {
  layout(t);
  if (N < 16 || N % 16 != 0) bad("N (out_features) must be a positive multiple of 16, got " + std::to_string(N));
  if (K < kSmall || K % kSmall != 0) bad("K (in_features) must be a positive multiple of 32, got " + std::to_string(K));
}

// Value v (0..255) of column i in a record, as u8 with its offset (Q5_0: 0..31, Q8_0: value + 128).
uint8_t value_at(const Layout& L, const uint8_t* rec, int i, int v) {
  const int p = v / 4, j = v % 4;
  if (!L.q5) return rec[L.quads + 64 * p + 4 * i + j];
  const uint8_t byte = rec[L.quads + 64 * (p % 32) + 4 * i + j];
  uint64_t mask;
  std::memcpy(&mask, rec + L.bits + 8 * p, 8);
  return static_cast<uint8_t>(((p < 32 ? byte : byte >> 4) & 0x0f) | (((mask >> (4 * i + j)) & 1u) << 4));
}

void groups_reference(QuantType t, const uint8_t* packed, const QuantActivations& a, int64_t g0, int64_t g1, float* y,
                      int64_t ldy) {
  const Layout L = layout(t);
  const int64_t M = a.M, K = a.K, nblocks = K / kSmall, n8 = quant::b16_records(K);
  const int off = quant::offset_b(t);
  std::vector<float> lanes(static_cast<size_t>(M * kGroup));
  for (int64_t g = g0; g < g1; ++g)
    for (int i = 0; i < 16; ++i) {
      std::fill(lanes.begin(), lanes.end(), 0.f);
      for (int64_t b = 0; b < nblocks; ++b) {
        const uint8_t* rec = packed + (g * n8 + b / kGroup) * L.record;
        const int jb = static_cast<int>(b % kGroup);
        const float d = quant::half_to_float(quant::load_u16(rec + quant::b16_d_at(L, jb, i)));
        for (int64_t m = 0; m < M; ++m) {
          const int8_t* aq = a.row_q(m) + b * kSmall;
          int32_t isum = 0;
          for (int e = 0; e < kSmall; ++e) isum += value_at(L, rec, i, jb * kSmall + e) * aq[e];
          isum -= off * a.bsum32[m * nblocks + b];
          float& lane = lanes[m * kGroup + jb];
          lane = quant::kind_b_lane_step(lane, d, a.row_d(m)[b], isum);
        }
      }
      for (int64_t m = 0; m < M; ++m) y[m * ldy + 16 * g + i] = quant::kind_b_reduce(lanes.data() + m * kGroup);
    }
}

#ifdef SAGUARO_B16_X86

#define SAGUARO_B16_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

// Block b's (the jb-th of its record) exact sums into its lanes, one register per row: lane = fma(d * da,
// isum, lane) per column, as kind_b_lane_step. The sums already hold - offset * bsum (accumulator_start).
template <int R>
SAGUARO_B16_AVX512 inline void block_step(const Layout& L, const uint8_t* rec, int jb, int64_t b,
                                          const __m512i (&isum)[R], const QuantActivations& a, int64_t m0,
                                          __m512 (&lane)[R]) {
  const __m512 d = quant::b16_load_d(L, rec, jb);
  for (int r = 0; r < R; ++r)
    lane[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(a.row_d(m0 + r)[b])), _mm512_cvtepi32_ps(isum[r]),
                              lane[r]);
}

// Block b's vpdpbusd chain of row m starts at - offset * bsum rather than 0: the exact sum comes out of
// the chain with no subtraction after it, one 512-bit op less per row and block (see tile_q5).
SAGUARO_B16_AVX512 inline __m512i accumulator_start(const QuantActivations& a, int64_t m, int64_t b, int off,
                                                    int64_t nblocks) {
  return _mm512_set1_epi32(-off * a.bsum32[m * nblocks + b]);
}

// The 8 lanes of each row reduced as kind_b_reduce does, into y.
template <int R>
SAGUARO_B16_AVX512 inline void store_lanes(__m512 (&lane)[R][kGroup], int64_t g, int64_t m0, float* y, int64_t ldy) {
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (m0 + r) * ldy + 16 * g, quant::b16_reduce_lanes(lane[r]));
}

// Q8_0, R rows x 16 columns of group g: per 32-value block, 8 quads x R vpdpbusd, then the block's
// lane step; the 8 lanes reduced at the end. The block position jb (b % 8) is the outer loop, as in
// tile_q5, so each row's lane lives in a register.
template <int R>
SAGUARO_B16_AVX512 void tile_q8(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g,
                                int64_t m0, int off, float* y, int64_t ldy, bool prefetch_next, int row_tile,
                                int row_tiles) {
  const int64_t K = a.K, nblocks = K / kSmall, n8 = quant::b16_records(K);
  const detail::PrefetchPlan<kGroup> plan(L.record, row_tile, row_tiles);
  // two chains per row (even and odd quads) where fewer than 3 rows would leave one chain of 8
  // dependent vpdpbusd per block, bounding a 1-row product below the DRAM stream; from 3 rows on the
  // rows' chains interleave enough
  constexpr bool kSplit = R < 3;
  __m512 lane[R][kGroup];
  for (int jb = 0; jb < kGroup; ++jb) {
    __m512 l[R];
    for (int r = 0; r < R; ++r) l[r] = _mm512_setzero_ps();
    for (int64_t rix = 0; rix < n8; ++rix) {
      const int64_t b = rix * kGroup + jb;
      if (b >= nblocks) break;  // only the last record can be partial
      const uint8_t* rec = packed + (g * n8 + rix) * L.record;
      // an eighth of the next group's record per block (stream_prefetch.hpp)
      plan.fetch(prefetch_next ? rec + n8 * L.record : nullptr, jb);
      __m512i s[R], s2[R];
      for (int r = 0; r < R; ++r) {
        s[r] = accumulator_start(a, m0 + r, b, off, nblocks);
        s2[r] = _mm512_setzero_si512();
      }
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m512i q = _mm512_loadu_si512(rec + L.quads + 64 * (8 * jb + j));
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int8_t* quad = a.row_q(m0 + r) + b * kSmall + 4 * j;
          if (kSplit && j % 2 == 1) {
            s2[r] = quant::dpbusd_broadcast(s2[r], q, quad);
          } else {
            s[r] = quant::dpbusd_broadcast(s[r], q, quad);
          }
        }
      }
      if constexpr (kSplit)
        for (int r = 0; r < R; ++r) s[r] = _mm512_add_epi32(s[r], s2[r]);
      block_step<R>(L, rec, jb, b, s, a, m0, l);
    }
    for (int r = 0; r < R; ++r) lane[r][jb] = l[r];
  }
  store_lanes<R>(lane, g, m0, y, ldy);
}

// Q5_0, R rows x 16 columns of group g: a record's blocks jb and jb + 4 share its quad bytes (low and
// high nibbles), so each 64-byte chunk is loaded and split once for both, and their two exact sums are
// independent chains (measured on the 0.5B's gate/up shape streamed from DRAM: a 1-row product 25%
// faster than one block at a time, 5 rows 22%); then each block's lane step as for Q8_0. The block
// position jb is the outer loop, over every record of the group: only the lanes of blocks jb and
// jb + 4 are live, in registers, where lanes indexed by a running jb would live in memory (a load and
// a store per row and block). Each lane still takes its blocks in order. With accumulator_start, 16 rows
// on Zen 4 (one thread, alternating builds): the 0.5B's Q5_0 gate/up 93 -> 107 G multiply-adds/s, its
// Q8_0 head 70 -> 90; its 16-branch tree step 91 -> 81 ms. On Zen 4 each 512-bit op besides vpdpbusd
// (the lane step's cvt, mul, fma included) takes a cycle vpdpbusd could have used.
template <int R>
SAGUARO_B16_AVX512 void tile_q5(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g,
                                int64_t m0, int off, float* y, int64_t ldy, bool prefetch_next, int row_tile,
                                int row_tiles) {
  const int64_t K = a.K, nblocks = K / kSmall, n8 = quant::b16_records(K);
  const __m512i lo4 = _mm512_set1_epi8(0x0f), five = _mm512_set1_epi8(0x10);
  const detail::PrefetchPlan<4> plan(L.record, row_tile, row_tiles);
  __m512 lane[R][kGroup];
  for (int jb = 0; jb < 4; ++jb) {
    __m512 llo[R], lhi[R];
    for (int r = 0; r < R; ++r) llo[r] = lhi[r] = _mm512_setzero_ps();
    for (int64_t rix = 0; rix < n8; ++rix) {
      const uint8_t* rec = packed + (g * n8 + rix) * L.record;
      const int64_t b0 = rix * kGroup, count = std::min<int64_t>(kGroup, nblocks - b0);
      if (jb >= count) break;  // only the last record can be partial
      plan.fetch(prefetch_next ? rec + n8 * L.record : nullptr, jb);
      const bool high = jb + 4 < count;  // a partial last record may hold only blocks 0-3
      const int64_t blo = b0 + jb, bhi = b0 + jb + 4;
      __m512i slo[R], shi[R];
      for (int r = 0; r < R; ++r) {
        slo[r] = accumulator_start(a, m0 + r, blo, off, nblocks);
        shi[r] = high ? accumulator_start(a, m0 + r, bhi, off, nblocks) : _mm512_setzero_si512();
      }
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const int p = 8 * jb + j;
        const __m512i v = _mm512_loadu_si512(rec + L.quads + 64 * p);
        // the fifth bits of the low-nibble values (chunk p) and the high ones (p + 32)
        // kmovq straight from memory (a load), not through a general register; GCC's _load_mask64
        // takes a non-const pointer but only reads it
        uint8_t* bits = const_cast<uint8_t*>(rec + L.bits);
        const __mmask64 mlo = _load_mask64(reinterpret_cast<__mmask64*>(bits + 8 * p));
        const __mmask64 mhi = _load_mask64(reinterpret_cast<__mmask64*>(bits + 8 * (p + 32)));
        const __m512i nlo = _mm512_and_si512(v, lo4), nhi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        const __m512i qlo = _mm512_mask_add_epi8(nlo, mlo, nlo, five);  // + 16 where set
        const __m512i qhi = _mm512_mask_add_epi8(nhi, mhi, nhi, five);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          slo[r] = quant::dpbusd_broadcast(slo[r], qlo, a.row_q(m0 + r) + blo * kSmall + 4 * j);
          if (high)  // the same way for the whole block: well predicted
            shi[r] = quant::dpbusd_broadcast(shi[r], qhi, a.row_q(m0 + r) + bhi * kSmall + 4 * j);
        }
      }
      block_step<R>(L, rec, jb, blo, slo, a, m0, llo);
      if (high) block_step<R>(L, rec, jb + 4, bhi, shi, a, m0, lhi);
    }
    for (int r = 0; r < R; ++r) {
      lane[r][jb] = llo[r];
      lane[r][jb + 4] = lhi[r];
    }
  }
  store_lanes<R>(lane, g, m0, y, ldy);
}

template <int R, bool kQ5>
SAGUARO_B16_AVX512 inline void tile(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g,
                                    int64_t m0, int off, float* y, int64_t ldy, bool prefetch_next, int row_tile,
                                    int row_tiles) {
  if constexpr (kQ5) {
    tile_q5<R>(L, packed, a, g, m0, off, y, ldy, prefetch_next, row_tile, row_tiles);
  } else {
    tile_q8<R>(L, packed, a, g, m0, off, y, ldy, prefetch_next, row_tile, row_tiles);
  }
}

template <bool kQ5>
SAGUARO_B16_AVX512 void groups_avx512(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g0,
                                      int64_t g1, int off, float* y, int64_t ldy) {
  const int64_t M = a.M;
  const int64_t tiles = (M + 4) / 5, per = (M + tiles - 1) / tiles;  // row tiles of <= 5, as even as possible
  const int n = static_cast<int>((M + per - 1) / per);
  // Each group's row tiles prefetch the next group's records, spread over all of them
  // (stream_prefetch.hpp): at 16 rows the first tile alone would ask for them faster than one core's
  // misses can be served, and stall.
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t m0 = 0; m0 < M; m0 += per) {
      const bool next = g + 1 < g1;
      const int i = static_cast<int>(m0 / per);
      switch (std::min<int64_t>(per, M - m0)) {
        case 1: tile<1, kQ5>(L, packed, a, g, m0, off, y, ldy, next, i, n); break;
        case 2: tile<2, kQ5>(L, packed, a, g, m0, off, y, ldy, next, i, n); break;
        case 3: tile<3, kQ5>(L, packed, a, g, m0, off, y, ldy, next, i, n); break;
        case 4: tile<4, kQ5>(L, packed, a, g, m0, off, y, ldy, next, i, n); break;
        default: tile<5, kQ5>(L, packed, a, g, m0, off, y, ldy, next, i, n); break;
      }
    }
}

#define SAGUARO_B16_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SAGUARO_B16_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

// 0x10 in each byte whose bit is set in the 32 bits at p (byte i <- bit i): the Q5_0 fifth bits of half
// a chunk.
SAGUARO_B16_AVX2_INLINE __m256i fifth_bits(const uint8_t* p) {
  return _mm256_and_si256(quant::simd::bytes_from_bits_32(p), _mm256_set1_epi8(0x10));
}

// The AVX2 lanes of R rows x 16 columns (two halves of 8) x kGroup blocks, kept in memory: 16 R
// registers would not fit. Block b's exact sum into its lane as kind_b_lane_step does, and at the end
// the 8 lanes reduced in kind_b_reduce's order, as the AVX-512 kernel does per lane.
template <int R>
struct LanesAvx2 {
  alignas(32) float v[R][kGroup][16];

  SAGUARO_B16_AVX2_INLINE void zero() { std::memset(v, 0, sizeof(v)); }
  SAGUARO_B16_AVX2_INLINE void step(const Layout& L, const uint8_t* rec, int jb, int64_t b, int h, int r, __m256i sum,
                                    const QuantActivations& a, int64_t m, int off, int64_t nblocks) {
    const __m256 d =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + quant::b16_d_at(L, jb, 8 * h))));
    const __m256i isum = _mm256_sub_epi32(sum, _mm256_set1_epi32(off * a.bsum32[m * nblocks + b]));
    float* lane = v[r][jb] + 8 * h;
    _mm256_store_ps(lane, _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(a.row_d(m)[b])), _mm256_cvtepi32_ps(isum),
                                          _mm256_load_ps(lane)));
  }
  SAGUARO_B16_AVX2_INLINE void store(int64_t g, int64_t m0, float* y, int64_t ldy) const {
    for (int r = 0; r < R; ++r)
      for (int h = 0; h < 2; ++h) {
        __m256 l[kGroup];
        for (int j = 0; j < kGroup; ++j) l[j] = _mm256_load_ps(v[r][j] + 8 * h);
        const __m256 s0 = _mm256_add_ps(l[0], l[4]), s1 = _mm256_add_ps(l[1], l[5]);
        const __m256 s2 = _mm256_add_ps(l[2], l[6]), s3 = _mm256_add_ps(l[3], l[7]);
        _mm256_storeu_ps(y + (m0 + r) * ldy + 16 * g + 8 * h,
                         _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3)));
      }
  }
};

// Q8_0 on AVX2, R rows x 16 columns of group g: no vpdpbusd, and pmaddubsw of the stored w + 128 would
// saturate int16, so pmaddubsw of |w| by the activation quad with w's sign (the GGUF blocks' AVX2 path
// does the same), int16 pairs widened by pmaddwd at once (two products could overflow int16), then each
// block's lane step with no offset: the signed sums are exactly the offset ones.
template <int R>
SAGUARO_B16_AVX2 void tile_q8_avx2(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g,
                                   int64_t m0, float* y, int64_t ldy) {
  const int64_t nblocks = a.K / kSmall, n8 = quant::b16_records(a.K);
  const __m256i ones = _mm256_set1_epi16(1);
  LanesAvx2<R> lanes;
  lanes.zero();
  for (int64_t b = 0; b < nblocks; ++b) {
    const uint8_t* rec = packed + (g * n8 + b / kGroup) * L.record;
    const int jb = static_cast<int>(b % kGroup);
    // the next group's record, an eighth per block
    for (int64_t c = 0; c < L.record / kGroup; c += 64)
      _mm_prefetch(reinterpret_cast<const char*>(rec + n8 * L.record + jb * (L.record / kGroup) + c), _MM_HINT_T0);
    for (int h = 0; h < 2; ++h) {
      __m256i sum[R];
      for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        // the record holds w + 128 as u8 (for vpdpbusd); back to signed w, whose sum needs no offset
        const __m256i q = _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + L.quads + 64 * (8 * jb + j) + 32 * h)),
            _mm256_set1_epi8(static_cast<char>(0x80)));
        const __m256i aw = _mm256_sign_epi8(q, q);
#pragma GCC unroll 2
        for (int r = 0; r < R; ++r) {
          int32_t quad;
          std::memcpy(&quad, a.row_q(m0 + r) + b * kSmall + 4 * j, 4);
          const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(quad), q));
          sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(p, ones));
        }
      }
      for (int r = 0; r < R; ++r) lanes.step(L, rec, jb, b, h, r, sum[r], a, m0 + r, 0, nblocks);
    }
  }
  lanes.store(g, m0, y, ldy);
}

// Q5_0 on AVX2: blocks jb and jb + 4 of a record share its quad bytes (low and high nibbles, the fifth
// bits from the masks); four quads' int16 pairs summed stay exact (|4 x 2 x 31 x 128| < 2^15) before
// pmaddwd widens them.
template <int R>
SAGUARO_B16_AVX2 void tile_q5_avx2(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g,
                                   int64_t m0, int off, float* y, int64_t ldy) {
  const int64_t nblocks = a.K / kSmall, n8 = quant::b16_records(a.K);
  const __m256i lo4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  LanesAvx2<R> lanes;
  lanes.zero();
  for (int64_t rix = 0; rix < n8; ++rix) {
    const uint8_t* rec = packed + (g * n8 + rix) * L.record;
    const int64_t b0 = rix * kGroup, count = std::min<int64_t>(kGroup, nblocks - b0);
    for (int64_t c = 0; c < L.record; c += 64)
      _mm_prefetch(reinterpret_cast<const char*>(rec + n8 * L.record + c), _MM_HINT_T0);
    for (int jb = 0; jb < 4 && jb < count; ++jb) {
      const bool high = jb + 4 < count;  // a partial last record may hold only blocks 0-3
      const int64_t blo = b0 + jb, bhi = b0 + jb + 4;
      for (int h = 0; h < 2; ++h) {
        __m256i slo[R], shi[R];
        for (int r = 0; r < R; ++r) slo[r] = shi[r] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int half = 0; half < 2; ++half) {  // quads 0-3, then 4-7: int16 sums flushed between
          __m256i plo[R], phi[R];
          for (int r = 0; r < R; ++r) plo[r] = phi[r] = _mm256_setzero_si256();
#pragma GCC unroll 4
          for (int jj = 0; jj < 4; ++jj) {
            const int j = 4 * half + jj, p = 8 * jb + j;
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + L.quads + 64 * p + 32 * h));
            // the fifth bits of the low-nibble values (chunk p) and the high ones (p + 32): this half's 32
            const __m256i qlo = _mm256_or_si256(_mm256_and_si256(v, lo4), fifth_bits(rec + L.bits + 8 * p + 4 * h));
            const __m256i qhi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), lo4),
                                                fifth_bits(rec + L.bits + 8 * (p + 32) + 4 * h));
#pragma GCC unroll 2
            for (int r = 0; r < R; ++r) {
              int32_t ql, qh = 0;
              std::memcpy(&ql, a.row_q(m0 + r) + blo * kSmall + 4 * j, 4);
              plo[r] = _mm256_add_epi16(plo[r], _mm256_maddubs_epi16(qlo, _mm256_set1_epi32(ql)));
              if (high) {
                std::memcpy(&qh, a.row_q(m0 + r) + bhi * kSmall + 4 * j, 4);
                phi[r] = _mm256_add_epi16(phi[r], _mm256_maddubs_epi16(qhi, _mm256_set1_epi32(qh)));
              }
            }
          }
          for (int r = 0; r < R; ++r) {
            slo[r] = _mm256_add_epi32(slo[r], _mm256_madd_epi16(plo[r], ones));
            shi[r] = _mm256_add_epi32(shi[r], _mm256_madd_epi16(phi[r], ones));
          }
        }
        for (int r = 0; r < R; ++r) {
          lanes.step(L, rec, jb, blo, h, r, slo[r], a, m0 + r, off, nblocks);
          if (high) lanes.step(L, rec, jb + 4, bhi, h, r, shi[r], a, m0 + r, off, nblocks);
        }
      }
    }
  }
  lanes.store(g, m0, y, ldy);
}

SAGUARO_B16_AVX2 void groups_avx2(const Layout& L, const uint8_t* packed, const QuantActivations& a, int64_t g0,
                                  int64_t g1, int off, float* y, int64_t ldy) {
  // row tiles of <= 2 (the registers of 8 columns x 2 rows x two sums); a group's records stay in
  // cache for the tiles after the first
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t m0 = 0; m0 < a.M; m0 += 2) {
      const bool one = a.M - m0 == 1;
      if (L.q5) {
        if (one) tile_q5_avx2<1>(L, packed, a, g, m0, off, y, ldy);
        else tile_q5_avx2<2>(L, packed, a, g, m0, off, y, ldy);
      } else {
        if (one) tile_q8_avx2<1>(L, packed, a, g, m0, y, ldy);
        else tile_q8_avx2<2>(L, packed, a, g, m0, y, ldy);
      }
    }
}

#endif  // SAGUARO_B16_X86

}  // namespace

int64_t quant_b16_packed_bytes(QuantType t, int64_t N, int64_t K) {
  check(t, N, K);
  return N / 16 * quant::b16_records(K) * layout(t).record;
}

void quant_b16_repack(QuantType t, const uint8_t* w, int64_t N, int64_t K, uint8_t* out, int threads) {
  check(t, N, K);
  if (w == nullptr || out == nullptr) bad("w and out must not be null");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  const Layout L = layout(t);
  const int64_t nblocks = K / kSmall, n8 = quant::b16_records(K), row_bytes = quant_row_bytes(t, K);
  const int64_t bb = quant_block_bytes(t), groups = N / 16;
  // each part owns whole groups of 16 rows: their records are written (and first zeroed) by it alone
  const std::function<void(int)> part = [&](int th) {
    const int64_t per = (groups + threads - 1) / threads, g0 = th * per, g1 = std::min(groups, (th + 1) * per);
    if (g0 >= g1) return;
    std::memset(out + g0 * n8 * L.record, 0, static_cast<size_t>((g1 - g0) * n8 * L.record));
    for (int64_t g = g0; g < g1; ++g)
      for (int i = 0; i < 16; ++i)
        for (int64_t b = 0; b < nblocks; ++b) {
          uint8_t* rec = out + (g * n8 + b / kGroup) * L.record;
          const int jb = static_cast<int>(b % kGroup);
          uint8_t q[kSmall];
          float d;
          const uint8_t* blk = w + (16 * g + i) * row_bytes + b * bb;
          quant::unpack_block_b_scalar(t, blk, q, d);
          std::memcpy(rec + quant::b16_d_at(L, jb, i), blk, 2);  // the block's fp16 d (its first 2 bytes)
          for (int e = 0; e < kSmall; ++e) {
            const int v = jb * kSmall + e, p = v / 4, j = v % 4;
            if (!L.q5) {
              rec[L.quads + 64 * p + 4 * i + j] = q[e];
              continue;
            }
            rec[L.quads + 64 * (p % 32) + 4 * i + j] |= static_cast<uint8_t>((q[e] & 0x0f) << (p < 32 ? 0 : 4));
            if (q[e] & 0x10) {
              uint64_t mask;
              std::memcpy(&mask, rec + L.bits + 8 * p, 8);
              mask |= uint64_t{1} << (4 * i + j);
              std::memcpy(rec + L.bits + 8 * p, &mask, 8);
            }
          }
        }
  };
  if (threads == 1 || !detail::ColumnPool::instance().try_run(threads, part))
    for (int th = 0; th < threads; ++th) part(th);
}

void quant_b16_gemm(QuantType t, const uint8_t* packed, int64_t N, int64_t K, const float* x, int64_t M, float* y,
                    int64_t ldy, int threads, CpuIsa isa) {
  check(t, N, K);
  quant::check_gemm_call("quant_b16", M, N, ldy, packed, x, y, threads, isa);
  thread_local QuantActivations acts;
  quant::quantize_activations(x, M, K, kSmall, acts, isa);
  const QuantActivations& a = acts;  // the workers read this thread's activations
  const Layout L = layout(t);
  const int off = quant::offset_b(t);
  const int64_t groups = N / 16;
  const bool amx = isa == CpuIsa::kAvx512 && M >= quant::kB16AmxRows && cpu_amx_selected();
  // The AMX kernel's tiles read 16 activation rows at a time: zero rows pad them.
  thread_local std::vector<int8_t> padded_q;
  const int8_t* xq = a.q.data();
  if (amx && M % 16 != 0) {
    padded_q.assign(static_cast<size_t>((M + 15) / 16 * 16 * K), 0);
    std::copy(a.q.begin(), a.q.begin() + M * K, padded_q.begin());
    xq = padded_q.data();
  }
  auto run = [&](int64_t g0, int64_t g1) {
    if (amx) return quant::b16_groups_amx(L, packed, a, xq, g0, g1, y, ldy);
#ifdef SAGUARO_B16_X86
    if (isa == CpuIsa::kAvx512) {
      if (L.q5) return groups_avx512<true>(L, packed, a, g0, g1, off, y, ldy);
      return groups_avx512<false>(L, packed, a, g0, g1, off, y, ldy);
    }
    if (isa == CpuIsa::kAvx2) return groups_avx2(L, packed, a, g0, g1, off, y, ldy);
#endif
    groups_reference(t, packed, a, g0, g1, y, ldy);
  };
  constexpr int64_t kMinGroups = 4;
  detail::split_columns(groups, threads, kMinGroups, run);
}

}  // namespace saguaro
