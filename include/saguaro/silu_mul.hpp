#pragma once
// The SwiGLU product of a bf16 CPU MLP in one call: out = bf16(bf16(silu(gate)) * up), with silu(g) =
// g / (1 + exp(-g)) in fp32: the roundings of torch's F.silu(gate) * up on bf16 tensors. torch's two
// operators and their slices cost ~60 us a layer of the 1.5B at decode (~1.7 ms a token); this is ~3.
//
// exp is Cephes' expf (range reduction by ln 2 in two parts, a degree-5 polynomial, 2^n), each step one
// fp32 operation or FMA in the same order on every path (AVX-512, AVX2+FMA, scalar with std::fma), so the
// paths give the same bits. Its error is ~1 ulp of fp32; torch's exp differs by about as much, which
// changes a bf16-rounded silu about once in 2^15 values (by one bf16 step). exp(x) is +inf above
// 88.7228 (as fp32's exp is), so silu(g) = -0 below g = -88.7228, as torch gives.
#include <cstdint>

#include "saguaro/cpu_features.hpp"

namespace saguaro {

// gate_up [M, 2 * I] bf16 bits (each row: I gate values, then I up values); out [M, I] bf16 bits.
// Throws std::invalid_argument for M < 1, I < 1 or a null pointer.
void silu_mul_bf16(const uint16_t* gate_up, int64_t M, int64_t I, uint16_t* out, CpuIsa isa);

}  // namespace saguaro
