// The interleaved Q5_0 / Q8_0 GEMM on AMX-INT8 tiles (quant_b16_layout.hpp), for many rows (tree steps).
//
// Why: on AVX-512 VNNI each 32-value block costs every row 8 vpdpbusd plus a lane step (convert, scale,
// fma); at 16 rows that kept the 0.5B draft's tree step at ~3x its decode, compute-bound on one 512-bit
// port. One tdpbssd computes a block's exact integer sums for 16 rows x 16 columns at once, so what is
// left per row is the lane step, and the kernel streams the weights at nearly the 1-row rate.
//
// Per record (16 columns x 8 blocks): its values are decoded once into signed bytes in an L1 buffer,
// block jb's 8 quads (8 x 64 bytes) being exactly a tile B row layout (4 consecutive values of each of 16
// columns per row); the activations of 16 rows and one block are tile A (16 x 32 bytes, row stride K);
// C = A.B is each row's 16 column sums, Σ (q - offset) a, the integer sum the other paths form as
// Σ q a - offset Σ a. Then each row's lane runs kind_b_lane_step's float step: the same bits.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "quant_b16_layout.hpp"
#include "stream_prefetch.hpp"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
// GCC 12 reports the undefined source inside some AVX-512 intrinsics as "may be used uninitialized";
// every lane of their results is written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define SAGUARO_B16_AMX 1
#endif

namespace saguaro::quant {

#ifdef SAGUARO_B16_AMX

namespace {

#define SAGUARO_AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,fma")))

// ldtilecfg's 64-byte operand (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles: 0-1 C (16 rows x 16 int32), 2-3 A (16 rows x 32 int8), 4-5 B (8 rows x 64 int8); two of each so
// consecutive blocks do not wait on one tile register.
TileConfig tile_config() {
  TileConfig c;
  for (int t = 0; t < 2; ++t) {
    c.colsb[t] = 64, c.rows[t] = 16;
    c.colsb[2 + t] = 32, c.rows[2 + t] = 16;
    c.colsb[4 + t] = 64, c.rows[4 + t] = 8;
  }
  return c;
}

// A record's 64 value chunks as signed bytes (value - offset), chunk p at vals + 64 p.
SAGUARO_AMX_TARGET void decode(const B16Layout& L, const uint8_t* rec, int8_t* vals) {
  if (!L.q5) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));  // stored value + 128 -> value
#pragma GCC unroll 8
    for (int p = 0; p < 64; ++p)
      _mm512_storeu_si512(vals + 64 * p, _mm512_xor_si512(_mm512_loadu_si512(rec + L.quads + 64 * p), flip));
    return;
  }
  const __m512i lo4 = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(0x10);
#pragma GCC unroll 4
  for (int p = 0; p < 32; ++p) {
    const __m512i v = _mm512_loadu_si512(rec + L.quads + 64 * p);
    uint64_t mlo, mhi;  // fifth bits of chunk p (low nibbles) and p + 32 (high nibbles)
    std::memcpy(&mlo, rec + L.bits + 8 * p, 8);
    std::memcpy(&mhi, rec + L.bits + 8 * (p + 32), 8);
    const __m512i nlo = _mm512_and_si512(v, lo4), nhi = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
    // nibble + 16 * bit - 16: subtract 16 where the fifth bit is clear
    _mm512_storeu_si512(vals + 64 * p, _mm512_mask_sub_epi8(nlo, _cvtu64_mask64(~mlo), nlo, sixteen));
    _mm512_storeu_si512(vals + 64 * (p + 32), _mm512_mask_sub_epi8(nhi, _cvtu64_mask64(~mhi), nhi, sixteen));
  }
}

// The exact sums of blocks [0, count) of one record for the 16 rows at m0, row-major: sums[jb][16 r + i].
SAGUARO_AMX_TARGET void record_sums(const int8_t* vals, const int8_t* xq, int64_t K, int count, int64_t b0,
                                    int64_t m0, int32_t* sums, const uint8_t* next, int64_t record) {
  for (int jb = 0; jb < count; ++jb) {
    detail::prefetch_part(next, record, jb, count);  // spread: a burst of prefetches stalls the loop
    const int8_t* act = xq + m0 * K + (b0 + jb) * kSmall;
    const int8_t* w = vals + 512 * jb;
    if (jb % 2 == 0) {  // tile numbers must be constants
      _tile_zero(0);
      _tile_loadd(2, act, K);
      _tile_loadd(4, w, 64);
      _tile_dpbssd(0, 2, 4);
      _tile_stored(0, sums + 256 * jb, 64);
    } else {
      _tile_zero(1);
      _tile_loadd(3, act, K);
      _tile_loadd(5, w, 64);
      _tile_dpbssd(1, 3, 5);
      _tile_stored(1, sums + 256 * jb, 64);
    }
  }
}

// Block jb of one record into lane jb of a row tile's first `rows` rows: kind_b_lane_step. sums: the
// record's [kGroup blocks][16 rows x 16 columns] of this tile; da: the tile's activation scale rows, row
// stride nblocks; lanes: [16 rows][kGroup][16].
SAGUARO_AMX_TARGET void lane_step(const B16Layout& L, const uint8_t* rec, const int32_t* sums, int jb, int64_t b,
                                  const float* da, int64_t nblocks, int64_t rows, float* lanes) {
  const __m512 d = quant::b16_load_d(L, rec, jb);
  const int32_t* s = sums + 256 * jb;
#pragma GCC unroll 16
  for (int64_t r = 0; r < rows; ++r) {
    float* lane = lanes + (r * kGroup + jb) * 16;
    const __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(da[r * nblocks + b]));
    const __m512 isum = _mm512_cvtepi32_ps(_mm512_loadu_si512(s + 16 * r));
    _mm512_storeu_ps(lane, _mm512_fmadd_ps(dd, isum, _mm512_loadu_ps(lane)));
  }
}

// The 8 lanes of each row reduced as kind_b_reduce does, into y's 16 columns of group g.
SAGUARO_AMX_TARGET void store_lanes(const float* lanes, int64_t M, int64_t g, float* y, int64_t ldy) {
  for (int64_t m = 0; m < M; ++m) {
    __m512 l[kGroup];
    for (int j = 0; j < kGroup; ++j) l[j] = _mm512_loadu_ps(lanes + (m * kGroup + j) * 16);
    _mm512_storeu_ps(y + m * ldy + 16 * g, b16_reduce_lanes(l));
  }
}

}  // namespace

SAGUARO_AMX_TARGET void b16_groups_amx(const B16Layout& L, const uint8_t* packed, const QuantActivations& a,
                                       const int8_t* xq, int64_t g0, int64_t g1, float* y, int64_t ldy) {
  static const TileConfig config = tile_config();
  const int64_t M = a.M, K = a.K, nblocks = K / kSmall, n8 = b16_records(K), tiles = (M + 15) / 16;
  const int64_t total = (g1 - g0) * n8;  // records, in memory order
  const int64_t sums_record = tiles * kGroup * 256;
  // Records prefetched ahead: one core streams DRAM at ~8 GB/s only with several records in flight
  // (measured 2, 4, 8, 16 on the 0.5B draft's Q5_0 matrices at 16 rows: 8 best, 7% under 2).
  constexpr int64_t kAhead = 8;
  thread_local std::vector<float> lane_buf;  // [tiles * 16 rows, 8 lanes, 16 columns] of the current group
  thread_local std::vector<int32_t> sum_buf;  // two records' sums
  lane_buf.assign(static_cast<size_t>(tiles * 16 * kGroup * 16), 0.f);
  sum_buf.resize(static_cast<size_t>(2 * sums_record));
  alignas(64) int8_t vals[2][64 * 64];
  auto record = [&](int64_t i) { return packed + (g0 * n8 + i) * L.record; };
  auto count = [&](int64_t i) { return static_cast<int>(std::min<int64_t>(kGroup, nblocks - i % n8 * kGroup)); };
  // Loaded at every call and released at the end: other code on this thread (oneDNN) may use tiles with
  // its own configuration.
  _tile_loadconfig(&config);
  // A three-stage pipeline over the records: decode record i + 1, tile products of record i, lane steps
  // of record i - 1, so no tile load reads bytes that vector stores have only just written, and no
  // vector load reads a tile store's bytes right after it.
  decode(L, record(0), vals[0]);
  for (int64_t i = 0; i <= total; ++i) {
    if (i + 1 < total) decode(L, record(i + 1), vals[(i + 1) % 2]);
    if (i < total) {
      for (int64_t t = 0; t < tiles; ++t)
        record_sums(vals[i % 2], xq, K, count(i), i % n8 * kGroup, 16 * t,
                    sum_buf.data() + i % 2 * sums_record + t * kGroup * 256,
                    t == 0 && i + kAhead < total ? record(i + kAhead) : nullptr, L.record);
    }
    if (i == 0) continue;
    const int64_t j = i - 1;  // the record whose sums are ready
    const int64_t b0 = j % n8 * kGroup;
    for (int64_t t = 0; t < tiles; ++t)
      for (int jb = 0; jb < count(j); ++jb)
        lane_step(L, record(j), sum_buf.data() + j % 2 * sums_record + t * kGroup * 256, jb, b0 + jb,
                  a.d.data() + 16 * t * nblocks, nblocks, std::min<int64_t>(16, M - 16 * t),
                  lane_buf.data() + 16 * t * kGroup * 16);
    if (j % n8 == n8 - 1) {  // the group's last record
      store_lanes(lane_buf.data(), M, g0 + j / n8, y, ldy);
      std::fill(lane_buf.begin(), lane_buf.end(), 0.f);
    }
  }
  _tile_release();
}

#else

void b16_groups_amx(const B16Layout&, const uint8_t*, const QuantActivations&, const int8_t*, int64_t, int64_t,
                    float*, int64_t) {
  throw std::logic_error("quant_b16: the AMX kernel is not built for this platform");
}

#endif

}  // namespace saguaro::quant
