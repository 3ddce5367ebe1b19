// Q6_K repacked into 16-column interleaved super-blocks and its GEMM (include/saguaro/quant_q6k16.hpp).
#include "saguaro/quant_q6k16.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "column_pool.hpp"
#include "stream_prefetch.hpp"
#include "quant_formats.hpp"
#include "saguaro/quant_gemm.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 conversion intrinsics as "may be used
// uninitialized"; every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define SAGUARO_Q6K16_X86 1
#include "vnni_broadcast.hpp"
#endif

namespace saguaro {

namespace {

using quant::kSuper;
using quant::QuantActivations;
using quant::UnpackedA;

// Offsets inside one (16-column group, super-block) record: the quants in the order the kernel reads them
// (per group pair j: nibble chunks 4j .. 4j + 3, top-bit chunks j and j + 8), then the scales and d. Read
// strictly ascending, the record streams from DRAM at twice the speed of a layout with the top bits
// apart (measured: 10 GB/s on the 1.5B's head).
constexpr int64_t kPairBytes = 384, kSc = 3072, kD = 3328, kRecord = 3392;
constexpr int64_t ql_at(int c) { return kPairBytes * (c / 4) + 64 * (c % 4); }  // nibble chunk c (0..31)
constexpr int64_t qh_at(int t) { return kPairBytes * (t % 8) + 256 + 64 * (t / 8); }  // top-bit chunk t (0..15)
constexpr int64_t kGgufBlock = 210;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("q6k16: " + what); }

void check(int64_t N, int64_t K) {
  if (N < 16 || N % 16 != 0) bad("N (out_features) must be a positive multiple of 16, got " + std::to_string(N));
  if (K < kSuper || K % kSuper != 0) bad("K (in_features) must be a positive multiple of 256, got " + std::to_string(K));
}

// Byte of (column i, value v) in a quad chunk: quad v / 4, position 4 i + v % 4.
inline int64_t quad_byte(int i, int v) { return 4 * i + v % 4; }

// Column i of record `rec` back into the kind A form (the scalar path).
void unpack_column(const uint8_t* rec, int i, UnpackedA& u) {
  for (int v = 0; v < kSuper; ++v) {
    const int quad = v / 4, half = quad / 32;  // half 1: the high nibbles of chunk quad - 32
    const uint8_t nib = rec[ql_at(quad % 32) + quad_byte(i, v)];
    const uint8_t top = rec[qh_at(quad / 4) + quad_byte(i, v)];
    u.q[v] = static_cast<uint8_t>(((half ? nib >> 4 : nib) & 0x0f) | (((top >> (2 * (quad % 4))) & 3) << 4));
  }
  for (int j = 0; j < 16; ++j) {
    const int8_t sc = static_cast<int8_t>(rec[kSc + 32 * (j / 2) + 2 * i + j % 2]);
    u.sc[j] = sc;
    u.mn[j] = static_cast<int16_t>(32 * sc);
  }
  std::memcpy(&u.d, rec + kD + 4 * i, 4);
  u.dmin = u.d;
}

// The reference arithmetic on the repacked layout (the scalar path).
void groups_reference(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g0, int64_t g1, float* y,
                      int64_t ldy) {
  const int64_t M = a.M;
  UnpackedA u;
  std::vector<float> acc(static_cast<size_t>(M));
  for (int64_t g = g0; g < g1; ++g)
    for (int i = 0; i < 16; ++i) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t b = 0; b < nb; ++b) {
        unpack_column(packed + (g * nb + b) * kRecord, i, u);
        for (int64_t m = 0; m < M; ++m) acc[m] = quant::kind_a_block_reference(u, a, m, b, acc[m]);
      }
      for (int64_t m = 0; m < M; ++m) y[m * ldy + 16 * g + i] = acc[m];
    }
}

#ifdef SAGUARO_Q6K16_X86

#define SAGUARO_Q6K16_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define SAGUARO_Q6K16_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"), always_inline)) inline

// The top-2-bit chunk moved so that quad k's bits sit at bits 4, 5 of every byte (the rest is masked).
template <int k>
SAGUARO_Q6K16_INLINE __m512i top_bits(__m512i h) {
  if constexpr (k == 0) return _mm512_slli_epi16(h, 4);
  if constexpr (k == 1) return _mm512_slli_epi16(h, 2);
  if constexpr (k == 2) return h;
  return _mm512_srli_epi16(h, 2);
}

// The int32 scales of group j for the 16 columns (the low or high int16 of the pair vector of j / 2).
template <int j>
SAGUARO_Q6K16_INLINE __m512i group_scales(const uint8_t* rec) {
  const __m512i pairs =
      _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kSc + 32 * (j / 2))));
  if constexpr (j % 2 == 0) return _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
  return _mm512_srai_epi32(pairs, 16);
}

// Quad k of groups j and j + 8 (nibble chunk 4j + k) for R rows: the exact sums go into pl (group j) and
// ph (group j + 8).
template <int R, int j, int k>
SAGUARO_Q6K16_INLINE void quad(const uint8_t* rec, const int8_t* const (&aq)[R], __m512i hl, __m512i hh,
                               __m512i (&pl)[R], __m512i (&ph)[R]) {
  const __m512i lo4 = _mm512_set1_epi8(0x0f), top = _mm512_set1_epi8(0x30);
  const __m512i nib = _mm512_loadu_si512(rec + ql_at(4 * j + k));
  // q = nibble | top bits: vpternlogd A | (B & C) (0xf8)
  const __m512i ql = _mm512_ternarylogic_epi32(_mm512_and_si512(nib, lo4), top_bits<k>(hl), top, 0xf8);
  const __m512i qh =
      _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(nib, 4), lo4), top_bits<k>(hh), top, 0xf8);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    pl[r] = quant::dpbusd_broadcast(pl[r], ql, aq[r] + 16 * j + 4 * k);
    ph[r] = quant::dpbusd_broadcast(ph[r], qh, aq[r] + 128 + 16 * j + 4 * k);
  }
}

// Groups j and j + 8 (they share nibble chunks 4j .. 4j + 3) of R rows: their exact sums P_j scaled by
// sc_j (vpmulld) into isum.
template <int R, int j>
SAGUARO_Q6K16_INLINE void group_pair(const uint8_t* rec, const int8_t* const (&aq)[R], __m512i (&isum)[R]) {
  const __m512i hl = _mm512_loadu_si512(rec + qh_at(j)), hh = _mm512_loadu_si512(rec + qh_at(j + 8));
  __m512i pl[R], ph[R];
  for (int r = 0; r < R; ++r) pl[r] = ph[r] = _mm512_setzero_si512();
  quad<R, j, 0>(rec, aq, hl, hh, pl, ph);
  quad<R, j, 1>(rec, aq, hl, hh, pl, ph);
  quad<R, j, 2>(rec, aq, hl, hh, pl, ph);
  quad<R, j, 3>(rec, aq, hl, hh, pl, ph);
  const __m512i sl = group_scales<j>(rec), sh = group_scales<j + 8>(rec);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    isum[r] = _mm512_add_epi32(isum[r], _mm512_add_epi32(_mm512_mullo_epi32(pl[r], sl), _mm512_mullo_epi32(ph[r], sh)));
}

template <int R, int... J>
SAGUARO_Q6K16_INLINE void all_groups(const uint8_t* rec, const int8_t* const (&aq)[R], __m512i (&isum)[R],
                                     std::integer_sequence<int, J...>) {
  (group_pair<R, J>(rec, aq, isum), ...);
}

// R rows x 16 columns (group g) over all super-blocks; per block the exact isum and imin of every column
// lane, then kind_a_step's float sequence lane by lane.
template <int R>
SAGUARO_Q6K16_AVX512 void tile(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g, int64_t m0,
                               float* y, int64_t ldy, const uint8_t* next, int row_tile, int row_tiles) {
  const int64_t K = a.K;
  const detail::PrefetchPlan<2> plan(kRecord, row_tile, row_tiles);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = packed + (g * nb + b) * kRecord;
    const int8_t* aq[R];
    __m512i isum[R], imin[R];
    for (int r = 0; r < R; ++r) {
      aq[r] = a.row_q(m0 + r) + b * kSuper;
      isum[r] = imin[r] = _mm512_setzero_si512();
    }
    const uint8_t* next_rec = next == nullptr ? nullptr : next + b * kRecord;
    plan.fetch(next_rec, 0);
    all_groups<R>(rec, aq, isum, std::make_integer_sequence<int, 8>{});
    plan.fetch(next_rec, 1);
    // imin = Σ_j 32 sc_j bsum16_j = 32 Σ_u (sc_2u, sc_2u+1) . (bsum_2u, bsum_2u+1): exact in int32
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) {
      const __m512i pairs =
          _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kSc + 32 * u)));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        int32_t bs;
        std::memcpy(&bs, a.bsum16.data() + (m0 + r) * (K / 16) + b * 16 + 2 * u, 4);
        imin[r] = _mm512_dpwssd_epi32(imin[r], pairs, _mm512_set1_epi32(bs));
      }
    }
    const __m512 d = _mm512_loadu_ps(rec + kD);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(a.row_d(m0 + r)[b]));  // d * da (dmin = d)
      acc[r] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(isum[r]), acc[r]);
      const __m512 neg = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(dd), _mm512_set1_epi32(INT32_MIN)));
      acc[r] = _mm512_fmadd_ps(neg, _mm512_cvtepi32_ps(_mm512_slli_epi32(imin[r], 5)), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (m0 + r) * ldy + 16 * g, acc[r]);
}

SAGUARO_Q6K16_AVX512 void groups_avx512(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g0,
                                        int64_t g1, float* y, int64_t ldy) {
  const int64_t M = a.M;
  // row tiles of <= 5, as even as possible: a K = 4 verification (5 rows) unpacks each record once
  const int64_t tiles = (M + 4) / 5, per = (M + tiles - 1) / tiles;
  // Each group's row tiles prefetch the next group's records, spread over all of them (stream_prefetch.hpp).
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t m0 = 0; m0 < M; m0 += per) {
      const uint8_t* next = g + 1 < g1 ? packed + (g + 1) * nb * kRecord : nullptr;
      const int i = static_cast<int>(m0 / per), n = static_cast<int>((M + per - 1) / per);
      switch (std::min<int64_t>(per, M - m0)) {
        case 1: tile<1>(packed, nb, a, g, m0, y, ldy, next, i, n); break;
        case 2: tile<2>(packed, nb, a, g, m0, y, ldy, next, i, n); break;
        case 3: tile<3>(packed, nb, a, g, m0, y, ldy, next, i, n); break;
        case 4: tile<4>(packed, nb, a, g, m0, y, ldy, next, i, n); break;
        default: tile<5>(packed, nb, a, g, m0, y, ldy, next, i, n); break;
      }
    }
}

#define SAGUARO_Q6K16_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SAGUARO_Q6K16_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

// top_bits for one ymm half and quad k (a constant once the loops are unrolled; 16-bit shifts: after the
// 0x30 mask each byte keeps its own two bits)
SAGUARO_Q6K16_AVX2_INLINE __m256i top_bits_avx2(__m256i h, int k) {
  switch (k) {
    case 0: return _mm256_slli_epi16(h, 4);
    case 1: return _mm256_slli_epi16(h, 2);
    case 2: return h;
    default: return _mm256_srli_epi16(h, 2);
  }
}

// The AVX2 path: R rows x the group's 16 columns as two halves of 8 (one ymm each). pmaddubsw multiplies
// the 6-bit weights by a broadcast activation quad into int16 pairs; two quads summed stay exact
// (|2 x 2 x 63 x 128| = 32256 < 2^15), and pmaddwd by the group's scale in both halves of each column's
// lane adds them, scaled, in int32. The integer sums are those of the AVX-512 path and the float steps
// the same per lane, so the bits are the same.
template <int R>
SAGUARO_Q6K16_AVX2 void tile_avx2(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g, int64_t m0,
                                  float* y, int64_t ldy) {
  const int64_t K = a.K;
  const __m256i lo4 = _mm256_set1_epi8(0x0f), top = _mm256_set1_epi8(0x30);
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = packed + (g * nb + b) * kRecord;
    const int8_t* aq[R];
    for (int r = 0; r < R; ++r) aq[r] = a.row_q(m0 + r) + b * kSuper;
    // one half of the columns at a time: R rows' sums plus one half's weights fit the 16 registers
#pragma GCC unroll 1
    for (int h = 0; h < 2; ++h) {
      __m256i isum[R], imin[R];
      for (int r = 0; r < R; ++r) isum[r] = imin[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {  // groups j and j + 8 share the nibble chunks 4j .. 4j + 3
        if (h == 0)
          for (int64_t c = 0; c < kPairBytes; c += 64)
            _mm_prefetch(reinterpret_cast<const char*>(rec + kRecord + kPairBytes * j + c), _MM_HINT_T0);
        const __m256i hl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + qh_at(j) + 32 * h));
        const __m256i hh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + qh_at(j + 8) + 32 * h));
        // the scales of groups j (pair j / 2) and j + 8 (pair j / 2 + 4), each in both int16 halves of its
        // column's lane
        const __m256i pl = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kSc + 32 * (j / 2) + 16 * h)));
        const __m256i ph =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kSc + 32 * (j / 2 + 4) + 16 * h)));
        const __m256i sl = j % 2 ? _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pl, 0xF5), 0xF5)
                                 : _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(pl, 0xA0), 0xA0);
        const __m256i sh = j % 2 ? _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(ph, 0xF5), 0xF5)
                                 : _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(ph, 0xA0), 0xA0);
#pragma GCC unroll 2
        for (int k = 0; k < 4; k += 2) {
          __m256i ql[2], qh[2];
#pragma GCC unroll 2
          for (int e = 0; e < 2; ++e) {
            const __m256i nib = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + ql_at(4 * j + k + e) + 32 * h));
            ql[e] = _mm256_or_si256(_mm256_and_si256(nib, lo4), _mm256_and_si256(top_bits_avx2(hl, k + e), top));
            qh[e] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(nib, 4), lo4),
                                    _mm256_and_si256(top_bits_avx2(hh, k + e), top));
          }
#pragma GCC unroll 3
          for (int r = 0; r < R; ++r) {
            int32_t al[2], ah[2];
            std::memcpy(al, aq[r] + 16 * j + 4 * k, 8);
            std::memcpy(ah, aq[r] + 128 + 16 * j + 4 * k, 8);
            const __m256i l2 = _mm256_add_epi16(_mm256_maddubs_epi16(ql[0], _mm256_set1_epi32(al[0])),
                                                _mm256_maddubs_epi16(ql[1], _mm256_set1_epi32(al[1])));
            const __m256i h2 = _mm256_add_epi16(_mm256_maddubs_epi16(qh[0], _mm256_set1_epi32(ah[0])),
                                                _mm256_maddubs_epi16(qh[1], _mm256_set1_epi32(ah[1])));
            isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(_mm256_madd_epi16(l2, sl), _mm256_madd_epi16(h2, sh)));
          }
        }
      }
      // imin = Σ_j sc_j bsum16_j (times 32 below): pmaddwd of each column's scale pair by the sums' pair
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) {
        const __m256i pairs =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kSc + 32 * u + 16 * h)));
#pragma GCC unroll 3
        for (int r = 0; r < R; ++r) {
          int32_t bs;
          std::memcpy(&bs, a.bsum16.data() + (m0 + r) * (K / 16) + b * 16 + 2 * u, 4);
          imin[r] = _mm256_add_epi32(imin[r], _mm256_madd_epi16(pairs, _mm256_set1_epi32(bs)));
        }
      }
      const __m256 d = _mm256_loadu_ps(reinterpret_cast<const float*>(rec + kD) + 8 * h);
#pragma GCC unroll 3
      for (int r = 0; r < R; ++r) {
        const __m256 dd = _mm256_mul_ps(d, _mm256_set1_ps(a.row_d(m0 + r)[b]));  // d * da (dmin = d)
        acc[r][h] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum[r]), acc[r][h]);
        const __m256 neg = _mm256_xor_ps(dd, _mm256_set1_ps(-0.f));
        acc[r][h] = _mm256_fmadd_ps(neg, _mm256_cvtepi32_ps(_mm256_slli_epi32(imin[r], 5)), acc[r][h]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y + (m0 + r) * ldy + 16 * g + 8 * h, acc[r][h]);
}

SAGUARO_Q6K16_AVX2 void groups_avx2(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g0,
                                    int64_t g1, float* y, int64_t ldy) {
  // row tiles of <= 3, as even as possible (a K = 2 verification unpacks each record once); a group's
  // records stay in cache for the tiles after the first
  const int64_t M = a.M, tiles = (M + 2) / 3, per = (M + tiles - 1) / tiles;
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t m0 = 0; m0 < M; m0 += per) {
      switch (std::min<int64_t>(per, M - m0)) {
        case 1: tile_avx2<1>(packed, nb, a, g, m0, y, ldy); break;
        case 2: tile_avx2<2>(packed, nb, a, g, m0, y, ldy); break;
        default: tile_avx2<3>(packed, nb, a, g, m0, y, ldy); break;
      }
    }
}

#endif  // SAGUARO_Q6K16_X86

}  // namespace

int64_t q6k16_packed_bytes(int64_t N, int64_t K) {
  check(N, K);
  return N / 16 * (K / kSuper) * kRecord;
}

void q6k16_repack(const uint8_t* w, int64_t N, int64_t K, uint8_t* out, int threads) {
  check(N, K);
  if (w == nullptr || out == nullptr) bad("w and out must not be null");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  const int64_t nb = K / kSuper, row_bytes = quant_row_bytes(QuantType::kQ6_K, K), groups = N / 16;
  const std::function<void(int)> part = [&](int t) {
    const int64_t per = (groups + threads - 1) / threads;
    UnpackedA u;
    for (int64_t g = t * per; g < std::min(groups, (t + 1) * per); ++g)
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* rec = out + (g * nb + b) * kRecord;
        std::memset(rec, 0, kSc);  // the top bits are OR-ed in
        for (int i = 0; i < 16; ++i) {
          const uint8_t* blk = w + (16 * g + i) * row_bytes + b * kGgufBlock;
          quant::unpack_scales_a(QuantType::kQ6_K, blk, u);
          quant::unpack_q_a_scalar(QuantType::kQ6_K, blk, u.q);
          for (int v = 0; v < 128; ++v)  // values v and 128 + v share a nibble byte
            rec[ql_at(v / 4) + quad_byte(i, v)] =
                static_cast<uint8_t>((u.q[v] & 0x0f) | ((u.q[128 + v] & 0x0f) << 4));
          for (int v = 0; v < kSuper; ++v) {
            const int quad = v / 4;
            rec[qh_at(quad / 4) + quad_byte(i, v)] |= static_cast<uint8_t>((u.q[v] >> 4) << (2 * (quad % 4)));
          }
          for (int j = 0; j < 16; ++j) rec[kSc + 32 * (j / 2) + 2 * i + j % 2] = static_cast<uint8_t>(u.sc[j]);
          std::memcpy(rec + kD + 4 * i, &u.d, 4);
        }
      }
  };
  if (threads == 1 || !detail::ColumnPool::instance().try_run(threads, part))
    for (int t = 0; t < threads; ++t) part(t);
}

void q6k16_gemm(const uint8_t* packed, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads, CpuIsa isa) {
  check(N, K);
  quant::check_gemm_call("q6k16", M, N, ldy, packed, x, y, threads, isa);
  thread_local QuantActivations acts;
  quant::quantize_activations(x, M, K, kSuper, acts, isa);
  const QuantActivations& a = acts;  // the workers read this thread's activations
  const int64_t nb = K / kSuper, groups = N / 16;
  auto run = [&](int64_t g0, int64_t g1) {
#ifdef SAGUARO_Q6K16_X86
    if (isa == CpuIsa::kAvx512) return groups_avx512(packed, nb, a, g0, g1, y, ldy);
    if (isa == CpuIsa::kAvx2) return groups_avx2(packed, nb, a, g0, g1, y, ldy);
#endif
    groups_reference(packed, nb, a, g0, g1, y, ldy);
  };
  constexpr int64_t kMinGroups = 4;  // >= 64 columns a part
  detail::split_columns(groups, threads, kMinGroups, run);
}

}  // namespace saguaro
