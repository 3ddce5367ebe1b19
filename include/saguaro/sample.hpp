#pragma once
// Branch (and chain) sampling on the draft side and the keyed inverse-CDF sampler shared by all kernels.
#include <cstdint>

#include "saguaro/philox.hpp"
#include "saguaro/logits_processing.hpp"
#include "saguaro/verify.hpp"

namespace saguaro {

// Process each logits row with its params (Saguaro included), sample one token with
// u(kDraft, positions[n]) and return the token and the processed row (the q the verifier will read).
void sample_rows_cpu(const float* logits, const ProcessParams* params, const RowKey* keys,
                     const int64_t* positions, int64_t N, int64_t V, float* probs_out, int32_t* tokens_out);

// Inverse CDF over token ids ascending, accumulating the float32 probabilities in double: the first
// token i with p_i > 0 and cumsum_i > u * total; the last token with p_i > 0 when rounding leaves
// none; -1 when the row has no positive entry.
int32_t sample_inverse_cdf(const float* probs, int64_t vocab, double u);

#ifdef SAGUARO_WITH_CUDA
// logits, probs_out, tokens_out: device pointers; params, keys, positions: HOST arrays of N entries.
void sample_rows_cuda(const float* logits, const ProcessParams* params, const RowKey* keys,
                      const int64_t* positions, int64_t N, int64_t V, float* probs_out, int32_t* tokens_out,
                      void* stream);
#endif

}  // namespace saguaro
