#pragma once
// Q6_K weights repacked once into a column-interleaved layout ("Q6_K x16"), as quant_q4k16.hpp does for
// Q4_K: the 1.5B target's output head and half its ffn_down / attn_v are Q6_K, and on their GGUF blocks
// every row of x pays horizontal sums per block.
//
// Per group of 16 output columns and 256-value super-block, one record of 3392 bytes (GGUF: 3360):
//   - 32 chunks of 64 bytes: for every column, 4 consecutive values of the low half (values 4c .. 4c + 3,
//     low nibbles of the 6-bit quants) and of the high half (128 + 4c .., high nibbles), as Q4_K x16;
//   - 16 chunks of 64 bytes of the quants' top 2 bits: chunk t holds quads 4t .. 4t + 3 (one 16-value
//     scale group), quad 4t + k in bits 2k, 2k + 1 of the byte of (column, value in the quad);
//   - the int8 scales as pairs of groups (2u, 2u + 1) per column (8 x 16 x 2 bytes): widened to int16 they
//     are vpdpwssd's operand for the mins and, shifted, the int32 scales of the sums;
//   - d as fp32 (16).
// One vpdpbusd multiplies a broadcast activation quad by 16 columns, with no horizontal sums.
//
// It holds exactly the GGUF's numbers and every path computes quant_gemm.hpp's integer block sums and
// float steps (mn = 32 sc, dmin = d), so q6k16_gemm gives the bits quant_gemm gives on the GGUF blocks
// (any path, rows, threads).
#include <cstdint>

#include "saguaro/cpu_features.hpp"

namespace saguaro {

// Bytes of the repacked form of an [N, K] Q6_K matrix; std::invalid_argument unless N % 16 == 0 and
// K % 256 == 0.
int64_t q6k16_packed_bytes(int64_t N, int64_t K);

// Repacks N rows of GGUF Q6_K blocks (N * K / 256 * 210 bytes) into `out` (q6k16_packed_bytes(N, K)).
void q6k16_repack(const uint8_t* w, int64_t N, int64_t K, uint8_t* out, int threads = 1);

// y[m * ldy + n] = Σ_k x[m * K + k] W[n, k] from the repacked W: the same bits as quant_gemm on the GGUF
// blocks. The AVX-512 and AVX2 paths run interleaved kernels (AVX2: pmaddubsw/pmaddwd on two halves of 8
// columns); the scalar path rebuilds each column's blocks (the reference arithmetic, slower).
void q6k16_gemm(const uint8_t* packed, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads, CpuIsa isa);

}  // namespace saguaro
