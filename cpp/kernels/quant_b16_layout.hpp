// The 16-column interleaved Q5_0 / Q8_0 record (include/saguaro/quant_b16.hpp), shared by its AVX-512
// kernels (quant_b16.cpp) and its AMX kernel (quant_b16_amx.cpp).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "quant_formats.hpp"
#include "saguaro/quant_gemm.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace saguaro::quant {

// Record layout: quads, then (Q5_0) the fifth-bit masks, then d as the GGUF's fp16, [kGroup blocks][16
// columns] (widened in registers: fp32 d made the records 9% (Q5_0) and 6% (Q8_0) larger than the GGUF's
// blocks, and a decode streams every record from DRAM).
struct B16Layout {
  bool q5;
  int64_t quads, bits, d, record;
};

inline B16Layout b16_layout(QuantType t) {
  if (t == QuantType::kQ5_0) return {true, 0, 2048, 2560, 2816};
  if (t == QuantType::kQ8_0) return {false, 0, 4096, 4096, 4352};
  throw std::invalid_argument(std::string("quant_b16: type ") + quant_type_name(t) + " is not Q5_0 or Q8_0");
}

// Records per 16 columns: K / 32 blocks in records of kGroup (8).
inline int64_t b16_records(int64_t K) { return (K / kSmall + kGroup - 1) / kGroup; }

// Where column i's d of block jb lies in a record (fp16 bits).
inline int64_t b16_d_at(const B16Layout& L, int jb, int i) { return L.d + (jb * 16 + i) * 2; }

#if defined(__x86_64__) || defined(__i386__)
// Block jb's d of the record's 16 columns, widened to fp32 (exactly), for both AVX-512 kernels.
__attribute__((target("avx512f"), always_inline)) inline __m512 b16_load_d(const B16Layout& L, const uint8_t* rec,
                                                                           int jb) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rec + b16_d_at(L, jb, 0))));
}

// 16 columns' 8 lanes reduced in kind_b_reduce's order, for both AVX-512 kernels (VNNI and AMX).
__attribute__((target("avx512f"), always_inline)) inline __m512 b16_reduce_lanes(const __m512 (&l)[kGroup]) {
  const __m512 s0 = _mm512_add_ps(l[0], l[4]), s1 = _mm512_add_ps(l[1], l[5]);
  const __m512 s2 = _mm512_add_ps(l[2], l[6]), s3 = _mm512_add_ps(l[3], l[7]);
  return _mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3));
}
#endif

}  // namespace saguaro::quant

namespace saguaro::quant {

// From this many rows quant_b16_gemm runs the AMX kernel where cpu_amx_selected(). Measured on the 0.5B
// draft's Q5_0 / Q8_0 shapes, one thread: even with AVX-512 VNNI at 8 rows, 1.5x faster at 16.
constexpr int64_t kB16AmxRows = 12;

// Column groups [g0, g1) of the repacked matrix times a.M rows with AMX-INT8 tiles: the same integer sums
// and float steps as the AVX-512 kernel, so the same bits. xq: the activations' int8 rows padded with
// zero rows to a multiple of 16 (a.q itself when a.M % 16 == 0): a tile reads 16 rows, while the
// scales are read for the a.M real rows only. Call only where cpu_amx_selected().
void b16_groups_amx(const B16Layout& L, const uint8_t* packed, const QuantActivations& a, const int8_t* xq,
                    int64_t g0, int64_t g1, float* y, int64_t ldy);

}  // namespace saguaro::quant
