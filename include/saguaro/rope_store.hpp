#pragma once
// The step between a layer's q/k/v projection and its attention, for bf16 CPU models, in one call:
// rotate the q and k heads of each new row in place (rotate-half RoPE) and store the row's k and v heads
// in the sequence's KV slots. It replaces ~12 torch operators a layer (cat, neg, three multiplies and an
// add per rotation, two transposed copies) that cost ~1.5 ms of a ~59 ms quantized decode of the 1.5B.
//
// Rotation of a head x [D] at a position with cos / sin [D] (half = D / 2, r = rotate_half(x), i.e.
// r[t] = -x[t + half] for t < half and x[t - half] after), with bf16() round-to-nearest-even:
//   x'[t] = bf16( bf16(x[t] * cos[t]) + bf16(r[t] * sin[t]) )
// exactly the roundings of the torch formula x * cos + rotate_half(x) * sin on bf16 tensors (each torch
// operator computes in fp32 and rounds), so the fused step changes no bit of the model's output.
#include <cstdint>

namespace saguaro {

// qkv [n, H + 2 * Hkv, D] bf16 bits, rows contiguous (q heads, then k heads, then v heads); cos / sin
// [n, D] bf16 bits (row i: row i's position); keys / values [Hkv, capacity, D] bf16 bits. Rotates heads
// [0, H + Hkv) of every row in place and copies row i's k and v heads to slot start + i. Requires D even,
// H % Hkv == 0 and start + n <= capacity; throws std::invalid_argument naming what is wrong.
void rope_store_bf16(uint16_t* qkv, int64_t n, int64_t H, int64_t Hkv, int64_t D, const uint16_t* cos,
                     const uint16_t* sin, uint16_t* keys, uint16_t* values, int64_t capacity, int64_t start);

}  // namespace saguaro
