#pragma once
// RMSNorm of bf16 rows in one call (saguaro.models.norm.RMSNorm for a bf16 model on the CPU):
//
//   r = 1 / sqrt(mean(x[m]^2) + eps)              the squares summed in double, in order, as llama.cpp's
//   out[m, d] = bf16(w[d] * bf16(x[m, d] * r))    ggml_compute_forward_rms_norm does; the rest in fp32
//
// with bf16() round-to-nearest-even: the operations of the torch formula (x.float() * rsqrt(...)).to(bf16)
// times the bf16 weight, except that torch's float sum may round differently. A decode step of the 1.5B
// runs 57 norms; as eight torch operators each they cost ~3 ms of its ~55. Each row depends on itself
// only (a row's bits do not depend on the other rows: verification rows equal decodes).
#include <cstdint>

namespace saguaro {

// x, out [M, D] row-major bf16 bits (out may be x); weight [D]. Throws std::invalid_argument for M < 1,
// D < 1, a null pointer or eps not > 0.
void rms_norm_bf16(const uint16_t* x, const uint16_t* weight, int64_t M, int64_t D, float eps, uint16_t* out);

// The residual add before a norm, in the same call: sum[m, d] = bf16(x[m, d] + delta[m, d]) (an fp32 add,
// rounded, as torch's bf16 add does), then out = rms_norm_bf16(sum). A decoder layer's two residual adds
// each feed the next norm, so each add and norm pair is one call. sum may be x or delta; out must differ
// from both. Throws as rms_norm_bf16 does.
void add_rms_norm_bf16(const uint16_t* x, const uint16_t* delta, const uint16_t* weight, int64_t M, int64_t D,
                       float eps, uint16_t* sum, uint16_t* out);

}  // namespace saguaro
