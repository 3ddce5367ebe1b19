#pragma once
// Whole arrays between bf16 bits and float, vectorized on the selected path (cpu_features.hpp): the
// exact widening, and round-to-nearest-even narrowing with the bits of float_to_bf16 (small_gemm.hpp)
// for every value, NaN included. A bf16 projection converts its rows in and out with these
// (quant_projection_bind.cpp); at 5 rows of the 1.5B's gate/up output, 90K values, the scalar loop cost
// more than the torch operator it replaced.
#include <cstdint>

namespace saguaro {

void bf16_to_floats(const uint16_t* x, float* y, int64_t n);
void floats_to_bf16(const float* x, uint16_t* y, int64_t n);

}  // namespace saguaro
