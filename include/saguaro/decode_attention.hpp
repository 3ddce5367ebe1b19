#pragma once
// Batch-invariant causal attention over a sequence's KV slots, one query row at a time, for bf16
// CPU models: the attention of a verification (K+1 new tokens) and of a decode step (1 token).
//
// Row i (of n) attends KV slots [0, start + i] of its KV head (grouped-query: head h reads KV head
// h / (H / Hkv)). Every (row, head) output is computed with one fixed sequence of fp32 operations
// that depends only on D and its own visible length L = start + i + 1:
//   s_t = hsum8(lane l: fma over d = l, l + 8, ... of q[d] * k[t, d]) * scale     (t < L)
//   m = max_t s_t;  p_t = exp(s_t - m);  z = p_0 + p_1 + ... (in t order)
// (exp is cephes_exp.hpp's: the same fp32 operations, vectorized or not, on every path)
//   o[d] = fma chain over t in order of p_t * v[t, d];  out[d] = bf16(o[d] / z)
// (hsum8 is the fixed tree ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) of the 8 lanes). So a row's output
// is bit-identical whether it runs alone (a decode) or with others (a verification), whatever the
// thread count and whichever code path (AVX2+FMA or the scalar twin) runs.
#include <cstdint>

#include "saguaro/small_gemm.hpp"  // SmallGemmPath, bf16 helpers

namespace saguaro {

// q [n, H, D] bf16 bits with row stride q_row_stride elements (heads contiguous, D apart);
// keys / values [Hkv, capacity, D] bf16 bits; out [n, H, D] bf16 bits (contiguous).
// Requires start + n <= capacity and H % Hkv == 0. threads >= 1 split the (row, head) pairs.
// Throws std::invalid_argument naming the bad argument.
void causal_attention_bf16(const uint16_t* q, int64_t q_row_stride, const uint16_t* keys, const uint16_t* values,
                           int64_t capacity, int64_t n, int64_t H, int64_t Hkv, int64_t D, int64_t start, float scale,
                           uint16_t* out, int threads, SmallGemmPath path = SmallGemmPath::kAuto);

// The same arithmetic over an explicit visible set per row, for the branches of a tree step: row i
// sees slots [0, prefix[i]) and then own_first[i] + j * own_stride for j < own_count (its own branch
// tokens, in depth order), in that order. Requires every slot < capacity and prefix[i] + own_count >= 1.
void branch_attention_bf16(const uint16_t* q, int64_t q_row_stride, const uint16_t* keys, const uint16_t* values,
                           int64_t capacity, int64_t n, int64_t H, int64_t Hkv, int64_t D, const int64_t* prefix,
                           const int64_t* own_first, int64_t own_stride, int64_t own_count, float scale,
                           uint16_t* out, int threads, SmallGemmPath path = SmallGemmPath::kAuto);

}  // namespace saguaro
