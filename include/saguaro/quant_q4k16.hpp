#pragma once
// Q4_K weights repacked once into a column-interleaved layout ("Q4_K x16") for multi-row products.
//
// The GGUF layout stores each output row's super-blocks contiguously, so a product must reduce every
// block's integer sum horizontally, per row of x. This layout interleaves 16 output columns: for each
// group of 16 columns and each 256-value super-block, 32 chunks of 64 bytes hold, for every column, 4
// consecutive values of the low half (values 4p .. 4p + 3, low nibbles) and of the high half (128 + 4p ..,
// high nibbles); then the 6-bit scales (8 x 16 bytes) and mins (a byte each, in pairs of sub-blocks per
// column: 4 x 16 x 2 bytes), then d and dmin as the GGUF's fp16 (16 each). One vpdpbusd multiplies a
// broadcast activation quad by 16 columns at once with no horizontal sums.
//
// It holds exactly the GGUF's numbers (nibbles, 6-bit scales and mins, fp16 d / dmin), and
// every path computes the integer block sums and float steps of quant_gemm.hpp's contract, so
// quant_gemm_q4k16 gives the bits quant_gemm gives on the GGUF blocks (any path, rows, threads).
// 2368 bytes per 16 columns x 256 values (GGUF: 2304).
#include <cstdint>

#include "saguaro/cpu_features.hpp"

namespace saguaro {

// Bytes of the repacked form of an [N, K] Q4_K matrix; std::invalid_argument unless N % 16 == 0 and
// K % 256 == 0.
int64_t q4k16_packed_bytes(int64_t N, int64_t K);

// Repacks N rows of GGUF Q4_K blocks (N * K / 256 * 144 bytes) into `out` (q4k16_packed_bytes(N, K)).
void q4k16_repack(const uint8_t* w, int64_t N, int64_t K, uint8_t* out, int threads = 1);

// y[m * ldy + n] = Σ_k x[m * K + k] W[n, k] from the repacked W: the same bits as quant_gemm on the GGUF
// blocks. The AVX-512 and AVX2 paths run interleaved kernels (AVX2: pmaddubsw/pmaddwd on two halves of 8
// columns); the scalar path rebuilds each column's blocks (the reference arithmetic, slower).
void q4k16_gemm(const uint8_t* packed, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads, CpuIsa isa);

}  // namespace saguaro
