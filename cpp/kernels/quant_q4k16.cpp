// Q4_K repacked into 16-column interleaved super-blocks and its GEMM (include/saguaro/quant_q4k16.hpp).
#include "saguaro/quant_q4k16.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "column_pool.hpp"
#include "stream_prefetch.hpp"
#include "vnni_broadcast.hpp"
#include "quant_formats.hpp"
#include "saguaro/quant_gemm.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 conversion intrinsics as "may be used
// uninitialized"; every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define SAGUARO_Q4K16_X86 1
#endif

namespace saguaro {

namespace {

using quant::kSuper;
using quant::QuantActivations;
using quant::UnpackedA;

// Offsets inside one (16-column group, super-block) record. The scales and mins are 6-bit, one byte
// each; d and dmin stay the GGUF's fp16 (widened in registers): 2368 bytes, 3% over the GGUF's 2304.
// A decode streams these bytes from DRAM, so every byte saved is time saved (int16 mins and fp32 d /
// dmin made it 2560: a decode read 11% more than the GGUF file).
constexpr int64_t kQs = 0, kSc = 2048, kMn = 2176, kD = 2304, kDmin = 2336, kRecord = 2368;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("q4k16: " + what); }

void check(int64_t N, int64_t K) {
  if (N < 16 || N % 16 != 0) bad("N (out_features) must be a positive multiple of 16, got " + std::to_string(N));
  if (K < kSuper || K % kSuper != 0) bad("K (in_features) must be a positive multiple of 256, got " + std::to_string(K));
}

// Column i of record `rec` back into the kind A form (the scalar path).
void unpack_column(const uint8_t* rec, int i, UnpackedA& u) {
  for (int p = 0; p < 32; ++p)
    for (int j = 0; j < 4; ++j) {
      const uint8_t v = rec[kQs + 64 * p + 4 * i + j];
      u.q[4 * p + j] = v & 0x0f;
      u.q[128 + 4 * p + j] = v >> 4;
    }
  for (int s = 0; s < 8; ++s) {
    u.sc[2 * s] = u.sc[2 * s + 1] = rec[kSc + 16 * s + i];
    u.mn[2 * s] = u.mn[2 * s + 1] = rec[kMn + (s / 2) * 32 + 2 * i + s % 2];
  }
  u.d = quant::half_to_float(quant::load_u16(rec + kD + 2 * i));
  u.dmin = quant::half_to_float(quant::load_u16(rec + kDmin + 2 * i));
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

#ifdef SAGUARO_Q4K16_X86

#define SAGUARO_Q4K16_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

// R rows x 16 columns (group g) over all super-blocks: broadcast activation quads times 16 columns per
// vpdpbusd; per sub-block the exact sums are scaled (vpmulld), the mins go through vpdpwssd, and each
// column lane runs kind_a_step's float sequence.
template <int R>
SAGUARO_Q4K16_AVX512 void tile(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g, int64_t m0,
                               float* y, int64_t ldy, const uint8_t* next, int row_tile, int row_tiles) {
  const int64_t K = a.K;
  const __m512i lo4 = _mm512_set1_epi8(0x0f);
  const detail::PrefetchPlan<4> plan(kRecord, row_tile, row_tiles);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = packed + (g * nb + b) * kRecord;
    __m512i isum[R], imin[R];
    for (int r = 0; r < R; ++r) isum[r] = imin[r] = _mm512_setzero_si512();
    for (int s = 0; s < 4; ++s) {
      plan.fetch(next == nullptr ? nullptr : next + b * kRecord, s);
      __m512i slo[R], shi[R];
      for (int r = 0; r < R; ++r) slo[r] = shi[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const int p = 8 * s + j;
        const __m512i v = _mm512_loadu_si512(rec + kQs + 64 * p);
        const __m512i lo = _mm512_and_si512(v, lo4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const int8_t* aq = a.row_q(m0 + r) + b * kSuper;
          slo[r] = quant::dpbusd_broadcast(slo[r], lo, aq + 4 * p);
          shi[r] = quant::dpbusd_broadcast(shi[r], hi, aq + 128 + 4 * p);
        }
      }
      const __m512i sclo = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kSc + 16 * s)));
      const __m512i schi =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kSc + 16 * (s + 4))));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
        isum[r] = _mm512_add_epi32(isum[r], _mm512_add_epi32(_mm512_mullo_epi32(slo[r], sclo),
                                                             _mm512_mullo_epi32(shi[r], schi)));
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      // each column's mins of sub-blocks 2q and 2q + 1 as an int16 pair
      const __m512i mn = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kMn + 32 * q)));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        int32_t pair;
        std::memcpy(&pair, a.bsum32k.data() + (m0 + r) * (K / 32) + b * 8 + 2 * q, 4);
        imin[r] = _mm512_dpwssd_epi32(imin[r], mn, _mm512_set1_epi32(pair));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kD)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kDmin)));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 da = _mm512_set1_ps(a.row_d(m0 + r)[b]);
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(d, da), _mm512_cvtepi32_ps(isum[r]), acc[r]);
      const __m512 negmin = _mm512_castsi512_ps(
          _mm512_xor_si512(_mm512_castps_si512(_mm512_mul_ps(dmin, da)), _mm512_set1_epi32(INT32_MIN)));
      acc[r] = _mm512_fmadd_ps(negmin, _mm512_cvtepi32_ps(imin[r]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (m0 + r) * ldy + 16 * g, acc[r]);
}

SAGUARO_Q4K16_AVX512 void groups_avx512(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g0,
                                        int64_t g1, float* y, int64_t ldy) {
  const int64_t M = a.M;
  const int64_t tiles = (M + 4) / 5, per = (M + tiles - 1) / tiles;  // row tiles of <= 5, as even as possible
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

#define SAGUARO_Q4K16_AVX2 __attribute__((target("avx2,fma,f16c")))

// The AVX2 path: R rows x the group's 16 columns as two halves of 8 (one ymm each). AVX2 has no
// vpdpbusd: pmaddubsw multiplies the weights (0..15) by a broadcast activation quad into int16 pairs,
// exact because 8 of them summed stay under 2^15 (|8 x 2 x 15 x 128| = 30720), and pmaddwd by the
// sub-block's scale in both halves of each column's lane gives the scaled sum in int32. The integer sums
// are those of the AVX-512 path and the float steps the same per lane, so the bits are the same.
template <int R>
SAGUARO_Q4K16_AVX2 void tile_avx2(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g, int64_t m0,
                                  float* y, int64_t ldy) {
  const int64_t K = a.K;
  const __m256i lo4 = _mm256_set1_epi8(0x0f);
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = packed + (g * nb + b) * kRecord;
    _mm_prefetch(reinterpret_cast<const char*>(rec + kRecord), _MM_HINT_T0);
    __m256i isum[R][2], imin[R][2];
    for (int r = 0; r < R; ++r) isum[r][0] = isum[r][1] = imin[r][0] = imin[r][1] = _mm256_setzero_si256();
    for (int s = 0; s < 4; ++s) {
      __m256i slo[R][2], shi[R][2];  // int16 pair sums of sub-blocks s (low nibbles) and s + 4 (high)
      for (int r = 0; r < R; ++r) slo[r][0] = slo[r][1] = shi[r][0] = shi[r][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const int p = 8 * s + j;
        _mm_prefetch(reinterpret_cast<const char*>(rec + kRecord + 64 * p + 64), _MM_HINT_T0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + kQs + 64 * p + 32 * h));
          const __m256i lo = _mm256_and_si256(v, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
#pragma GCC unroll 2
          for (int r = 0; r < R; ++r) {
            const int8_t* aq = a.row_q(m0 + r) + b * kSuper;
            int32_t ql, qh;
            std::memcpy(&ql, aq + 4 * p, 4);
            std::memcpy(&qh, aq + 128 + 4 * p, 4);
            slo[r][h] = _mm256_add_epi16(slo[r][h], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(ql)));
            shi[r][h] = _mm256_add_epi16(shi[r][h], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(qh)));
          }
        }
      }
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        // each column's scale in both int16 halves of its lane
        const __m256i sl = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + kSc + 16 * s + 8 * h)));
        const __m256i sh =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(rec + kSc + 16 * (s + 4) + 8 * h)));
        const __m256i sl2 = _mm256_or_si256(sl, _mm256_slli_epi32(sl, 16)), sh2 = _mm256_or_si256(sh, _mm256_slli_epi32(sh, 16));
#pragma GCC unroll 2
        for (int r = 0; r < R; ++r)
          isum[r][h] = _mm256_add_epi32(isum[r][h], _mm256_add_epi32(_mm256_madd_epi16(slo[r][h], sl2),
                                                                     _mm256_madd_epi16(shi[r][h], sh2)));
      }
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q)
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kMn + 32 * q + 16 * h)));
#pragma GCC unroll 2
        for (int r = 0; r < R; ++r) {
          int32_t pair;
          std::memcpy(&pair, a.bsum32k.data() + (m0 + r) * (K / 32) + b * 8 + 2 * q, 4);
          imin[r][h] = _mm256_add_epi32(imin[r][h], _mm256_madd_epi16(mn, _mm256_set1_epi32(pair)));
        }
      }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kD + 16 * h)));
      const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rec + kDmin + 16 * h)));
#pragma GCC unroll 2
      for (int r = 0; r < R; ++r) {
        const __m256 da = _mm256_set1_ps(a.row_d(m0 + r)[b]);
        acc[r][h] = _mm256_fmadd_ps(_mm256_mul_ps(d, da), _mm256_cvtepi32_ps(isum[r][h]), acc[r][h]);
        const __m256 negmin = _mm256_xor_ps(_mm256_mul_ps(dmin, da), _mm256_set1_ps(-0.f));
        acc[r][h] = _mm256_fmadd_ps(negmin, _mm256_cvtepi32_ps(imin[r][h]), acc[r][h]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) _mm256_storeu_ps(y + (m0 + r) * ldy + 16 * g + 8 * h, acc[r][h]);
}

SAGUARO_Q4K16_AVX2 void groups_avx2(const uint8_t* packed, int64_t nb, const QuantActivations& a, int64_t g0,
                                    int64_t g1, float* y, int64_t ldy) {
  // row tiles of <= 2 (the registers of 16 columns x 2 rows); a group's records (2.5 KB a super-block)
  // stay in cache for the tiles after the first
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t m0 = 0; m0 < a.M; m0 += 2) {
      if (a.M - m0 == 1) tile_avx2<1>(packed, nb, a, g, m0, y, ldy);
      else tile_avx2<2>(packed, nb, a, g, m0, y, ldy);
    }
}

#endif  // SAGUARO_Q4K16_X86

}  // namespace

int64_t q4k16_packed_bytes(int64_t N, int64_t K) {
  check(N, K);
  return N / 16 * (K / kSuper) * kRecord;
}

void q4k16_repack(const uint8_t* w, int64_t N, int64_t K, uint8_t* out, int threads) {
  check(N, K);
  if (w == nullptr || out == nullptr) bad("w and out must not be null");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  const int64_t nb = K / kSuper, row_bytes = quant_row_bytes(QuantType::kQ4_K, K), groups = N / 16;
  const std::function<void(int)> part = [&](int t) {
    const int64_t per = (groups + threads - 1) / threads;
    UnpackedA u;
    for (int64_t g = t * per; g < std::min(groups, (t + 1) * per); ++g)
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* rec = out + (g * nb + b) * kRecord;
        for (int i = 0; i < 16; ++i) {
          const uint8_t* blk = w + (16 * g + i) * row_bytes + b * 144;
          quant::unpack_scales_a(QuantType::kQ4_K, blk, u);
          quant::unpack_q_a_scalar(QuantType::kQ4_K, blk, u.q);
          for (int p = 0; p < 32; ++p)
            for (int j = 0; j < 4; ++j)
              rec[kQs + 64 * p + 4 * i + j] = static_cast<uint8_t>(u.q[4 * p + j] | (u.q[128 + 4 * p + j] << 4));
          for (int s = 0; s < 8; ++s) {
            rec[kSc + 16 * s + i] = static_cast<uint8_t>(u.sc[2 * s]);
            rec[kMn + (s / 2) * 32 + 2 * i + s % 2] = static_cast<uint8_t>(u.mn[2 * s]);  // 6-bit
          }
          std::memcpy(rec + kD + 2 * i, blk, 2);  // the block's fp16 d and dmin, as they are
          std::memcpy(rec + kDmin + 2 * i, blk + 2, 2);
        }
      }
  };
  if (threads == 1 || !detail::ColumnPool::instance().try_run(threads, part))
    for (int t = 0; t < threads; ++t) part(t);
}

void q4k16_gemm(const uint8_t* packed, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads, CpuIsa isa) {
  check(N, K);
  quant::check_gemm_call("q4k16", M, N, ldy, packed, x, y, threads, isa);
  thread_local QuantActivations acts;
  quant::quantize_activations(x, M, K, kSuper, acts, isa);
  const QuantActivations& a = acts;  // the workers read this thread's activations
  const int64_t nb = K / kSuper, groups = N / 16;
  auto run = [&](int64_t g0, int64_t g1) {
#ifdef SAGUARO_Q4K16_X86
    if (isa == CpuIsa::kAvx512) return groups_avx512(packed, nb, a, g0, g1, y, ldy);
    if (isa == CpuIsa::kAvx2) return groups_avx2(packed, nb, a, g0, g1, y, ldy);
#endif
    groups_reference(packed, nb, a, g0, g1, y, ldy);
  };
  constexpr int64_t kMinGroups = 4;  // >= 64 columns a part
  detail::split_columns(groups, threads, kMinGroups, run);
}

}  // namespace saguaro
