#pragma once
// A batch-invariant bf16 "small-M" linear kernel for CPUs without bf16 matrix instructions.
//
//   y[M, N] = x[M, K] @ W[N, K]^T (+ bias[N])      x, W, bias bf16 (uint16 bit patterns)
//
// The output is bf16 (round-to-nearest-even of the fp32 result) or fp32. Decode-sized M is
// memory-bandwidth bound: each weight is read once, widened to fp32 in registers and used for the
// FMAs of every row of a register tile, so an M-row call costs about one 1-row call for small M.
//
// Batch invariance (what makes bf16 speculative decoding exact): every output element (m, n) is
// computed with one fixed sequence of fp32 operations that depends only on K:
//   lane l in 0..7 accumulates fma(x[m, k], W[n, k], acc_l) for k = l, l + 8, l + 16, ... in order
//   (k >= K reads zeros), then s_i = acc_i + acc_{i+4} (i < 4), t_0 = s_0 + s_2, t_1 = s_1 + s_3,
//   r = t_0 + t_1, and finally r + bias[n] when there is a bias.
// So row m's output is bit-identical whatever M is, whatever the other rows hold, whatever the
// thread count (threads split the columns only) and whichever code path (AVX2+FMA or scalar) runs.
#include <cstdint>

namespace saguaro {

enum class SmallGemmPath { kAuto, kScalar, kAvx2 };

// True when this CPU can run the AVX2+FMA path.
bool small_gemm_has_avx2();

// x [M, K], weight [N, K], bias [N] or nullptr, all row-major bf16 bit patterns. Exactly one of
// y_bf16 / y_f32 ([M, N], row-major) must be non-null. threads >= 1 splits the N columns over a
// persistent pool (when the pool is in use by another caller, this call runs on its caller alone).
// kAuto takes AVX2 when the CPU has it; asking for kAvx2 on a CPU without it throws.
// Throws std::invalid_argument (the message names the argument) for bad sizes or pointers.
void small_gemm_bf16(const uint16_t* x, const uint16_t* weight, const uint16_t* bias, int64_t M, int64_t N,
                     int64_t K, uint16_t* y_bf16, float* y_f32, int threads,
                     SmallGemmPath path = SmallGemmPath::kAuto);

// Round-to-nearest-even fp32 -> bf16 (NaN stays a quiet NaN with its sign) and the exact widening.
inline uint16_t float_to_bf16(float f);
inline float bf16_to_float(uint16_t h);

}  // namespace saguaro

#include <cstring>

namespace saguaro {

inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace saguaro
