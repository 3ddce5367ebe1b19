#pragma once
// A batch-invariant bf16 "small-M" linear kernel for CPUs without bf16 matrix instructions.
//
//   y[M, N] = x[M, K] @ W[N, K]^T (+ bias[N])      x, W, bias bf16 (uint16 bit patterns)
//
// The output is bf16 (round-to-nearest-even of the fp32 result) or fp32.
//
// W is used in a packed panel layout (small_gemm_pack_bf16, done once at model load): panel p holds
// columns 16p .. 16p+15, and for every k their 16 weights sit in one 32-byte row, column 16p + j in
// the low half and 16p + 8 + j in the high half of 32-bit word j. One 256-bit load and two integer
// ops widen 16 weights to fp32; each is then used by every row of a register tile (an outer product:
// no horizontal sums). Each panel is one sequential stream, so a decode (M = 1) runs near the core's
// memory bandwidth and a 5-row verification near its FMA peak.
//
// Batch invariance (what makes bf16 speculative decoding exact): every output element (m, n) is
// computed with one fixed sequence of fp32 operations that depends only on K:
//   acc = +0; for k = 0 .. K-1 in order: acc = fma(x[m, k], W[n, k], acc); then acc + bias[n].
// So row m's output is bit-identical whatever M is, whatever the other rows hold, whatever the
// thread count (threads split the panels only) and whichever code path (AVX2+FMA or scalar) runs.
#include <cstdint>

namespace saguaro {

enum class SmallGemmPath { kAuto, kScalar, kAvx2 };

// True when this CPU can run the AVX2+FMA path.
bool small_gemm_has_avx2();

// Number of uint16 elements of the packed form of an [N, K] weight: ceil(N / 16) * K * 16.
int64_t small_gemm_packed_size(int64_t N, int64_t K);

// Packs weight [N, K] (row-major bf16 bits) into `packed` (small_gemm_packed_size(N, K) elements;
// the columns past N of the last panel are zero). threads >= 1 split the panels.
void small_gemm_pack_bf16(const uint16_t* weight, int64_t N, int64_t K, uint16_t* packed, int threads = 1);

// x [M, K] row-major bf16 bits, packed weight of an [N, K] matrix, bias [N] or nullptr. Exactly one
// of y_bf16 / y_f32 ([M, N], row-major) must be non-null. threads >= 1 splits the panels over a
// persistent pool (when the pool is in use by another caller, this call runs on its caller alone).
// kAuto takes AVX2 when the CPU has it; asking for kAvx2 on a CPU without it throws.
// Throws std::invalid_argument (the message names the argument) for bad sizes or pointers.
void small_gemm_bf16_packed(const uint16_t* x, const uint16_t* packed, const uint16_t* bias, int64_t M, int64_t N,
                            int64_t K, uint16_t* y_bf16, float* y_f32, int threads,
                            SmallGemmPath path = SmallGemmPath::kAuto);

// The same product from an unpacked weight [N, K]: packs it first (a copy per call; for tests and
// one-off products, models pack once).
void small_gemm_bf16(const uint16_t* x, const uint16_t* weight, const uint16_t* bias, int64_t M, int64_t N,
                     int64_t K, uint16_t* y_bf16, float* y_f32, int threads,
                     SmallGemmPath path = SmallGemmPath::kAuto);

// The roofline of the AVX2 path (bench/linear.py --roofline): what bounds a multi-row call is the
// core's fp32 FMA rate, what bounds a decode is the memory stream.
//
// This core's fp32 multiply-add rate (lanes per second: 8 per 256-bit FMA) with 12 independent
// chains, measured for about `seconds`; 0 when the CPU lacks AVX2+FMA. Throws std::invalid_argument
// for seconds outside (0, 10].
double small_gemm_fma_peak(double seconds = 0.2);

// Median seconds of one small_gemm_bf16_packed call of M rows (bf16 output) on a packed [N, K]
// weight of fixed pseudo-random bits, over `reps` calls made back to back in C++ after one warm-up
// call. A weight that fits the core's caches gives the kernel's compute rate; one larger than the
// last-level cache its streaming rate. Throws std::invalid_argument for bad sizes, reps < 1 or threads < 1.
double small_gemm_time_packed(int64_t M, int64_t N, int64_t K, int reps, int threads = 1);

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
