#pragma once
// Q5_0 and Q8_0 weights repacked once into a column-interleaved layout ("x16"), like quant_q4k16.hpp
// for Q4_K: per group of 16 output columns and 8 consecutive 32-value blocks (256 values), 64 quads of
// 4 values for all 16 columns (Q8_0: the value + 128 as u8, 64 bytes a quad; Q5_0: two quads' low 4 bits
// per byte and the fifth bits as one 64-bit mask a quad), then each block's d as the GGUF's fp16 (8 x 16). One
// vpdpbusd multiplies a broadcast activation quad by 16 columns.
//
// Same numbers as the GGUF blocks and the same integer sums and float steps as quant_gemm.hpp's
// contract for Q8_0 / Q5_0, so quant_b16_gemm gives the bits quant_gemm gives on the GGUF blocks.
// Q5_0: 2816 bytes per 16 columns x 256 values (as the GGUF); Q8_0: 4352 (as the GGUF). A last group of
// fewer than 8 blocks takes a whole record (zero-filled).
#include <cstdint>

#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_gemm.hpp"

namespace saguaro {

// Bytes of the repacked [N, K] matrix; std::invalid_argument unless t is Q5_0 / Q8_0, N % 16 == 0 and
// K % 32 == 0.
int64_t quant_b16_packed_bytes(QuantType t, int64_t N, int64_t K);

// Repacks N rows of GGUF blocks of type t into `out` (quant_b16_packed_bytes(t, N, K) bytes), on `threads`
// threads (each writes whole groups of 16 rows; the bytes do not depend on the count).
void quant_b16_repack(QuantType t, const uint8_t* w, int64_t N, int64_t K, uint8_t* out, int threads = 1);

// y[m * ldy + n] = Σ_k x[m * K + k] W[n, k] from the repacked W (the GGUF blocks' bits). The AVX-512 and
// AVX2 paths run interleaved kernels (AVX-512 with AMX tiles from kB16AmxRows rows where selected; AVX2 with
// pmaddubsw/pmaddwd on two halves of 8 columns); the scalar path rebuilds each column's blocks.
void quant_b16_gemm(QuantType t, const uint8_t* packed, int64_t N, int64_t K, const float* x, int64_t M, float* y,
                    int64_t ldy, int threads, CpuIsa isa);

}  // namespace saguaro
