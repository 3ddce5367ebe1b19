#pragma once
// Matrix products on GGUF-quantized weights, kept in their GGUF block formats (no dequantized copy).
//
//   y[M, N] = x[M, K] · W[N, K]^T       x fp32, W GGUF blocks (row n = K / block_elements blocks), y fp32
//
// Each activation row is quantized to int8 per block (256 values for the K-quants, 32 for Q8_0 / Q5_0;
// scale max|x| / 127, round to nearest even), as llama.cpp does with its Q8_K / Q8_0 activation blocks, so
// the inner products are integer dot products (vpdpbusd / vpdpwssd with AVX-512 VNNI, pmaddubsw + pmaddwd
// with AVX2). Every weight block is unpacked once per call and used by all M rows (M = 1..16 costs little
// more than M = 1 while the weights stream from memory).
//
// The arithmetic is fixed per output element, so every path (scalar, AVX2, AVX-512), every thread count
// and every M give the same bits, and row m's output depends only on row m of x (batch invariance: a
// K+1-row verification gives exactly the logits of one-row decodes):
//   - K-quants (Q4_K, Q6_K), per 256-value super-block b in order, with the exact integer sums
//       isum = Σ_j sc_j Σ_{e in j} q_e a_e   and   imin = Σ_j mn_j bsum_j   (j: 16-value groups)
//     acc = fma(d_b * da_b, float(isum), acc); acc = fma(-(dmin_b * da_b), float(imin), acc).
//   - Q8_0 / Q5_0, per 32-value block b, with the exact integer isum_b = Σ_e w_e a_e (w_e the integer
//     weight, offset included): lane[b % 8] = fma(d_b * da_b, float(isum_b), lane[b % 8]), and finally
//     y = ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
#include <cstddef>
#include <cstdint>

#include "saguaro/cpu_features.hpp"

namespace saguaro {

// GGML type ids (the values in a GGUF file's tensor info).
enum class QuantType : int { kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12, kQ6_K = 14 };

// True for the types above; the ids of others (F32, Q4_0, ...) are not supported by these kernels.
bool quant_type_supported(int ggml_type);

// "Q4_K", ...; the values per block (256 or 32) and the bytes per block (144, 210, 22, 34).
const char* quant_type_name(QuantType t);
int64_t quant_block_values(QuantType t);
int64_t quant_block_bytes(QuantType t);

// Bytes of one weight row of K values; std::invalid_argument when K is not a positive multiple of the
// type's block.
int64_t quant_row_bytes(QuantType t, int64_t K);

// out[r, :] = the fp32 weights of rows [0, rows) (`rows` rows of quant_row_bytes(t, K) bytes each),
// as llama.cpp's dequantize_row_* computes them.
void quant_dequantize_rows(QuantType t, const uint8_t* w, int64_t rows, int64_t K, float* out);

// y[m * ldy + n] = Σ_k x[m * K + k] W[n, k] for m < M, n < N. threads >= 1 split the columns (any split
// gives the same bits). isa: the path to run; a path this CPU lacks throws std::invalid_argument (use
// cpu_isa_selected()). Throws std::invalid_argument, naming the argument, for bad sizes or pointers.
void quant_gemm(QuantType t, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads, CpuIsa isa);

// The same with the path chosen by cpu_isa_selected() (so $SAGUARO_CPU_ISA applies).
void quant_gemm(QuantType t, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads);

}  // namespace saguaro
