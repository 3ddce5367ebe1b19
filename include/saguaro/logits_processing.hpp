#pragma once
// Processing of one logits row into the probability row that is sampled from / verified against
// (docs/contracts.md §2): temperature -> softmax (double) -> top-k -> top-p -> Saguaro -> renormalise.
#include <cstdint>

namespace saguaro {

struct ProcessParams {         // one per row
  float temperature = 1.f;     // 0 -> greedy: one-hot at argmax (lowest id on ties)
  int32_t top_k = 0;           // 0 -> off; keep the k largest logits (ties: lower id first)
  float top_p = 1.f;           // in (0, 1]; keep the smallest prob-descending prefix (ties: lower id) whose mass >= top_p
  float saguaro_c = 1.f;       // in [0, 1]; Saguaro adjustment, 1 -> off
  int32_t saguaro_topn = 0;    // the top-n tokens (by logit, ties lower id) scaled by saguaro_c; 0 -> off
};

// Throws std::invalid_argument naming `what` and the row when a field is out of range
// (temperature < 0 or not finite, top_k < 0, top_p outside (0, 1], saguaro_c outside [0, 1], saguaro_topn < 0).
void validate_process_params(const ProcessParams& params, int64_t row, const char* what);

// A row with NaN, +inf, or no finite logit throws std::invalid_argument naming the row.
// -inf logits are tokens of probability 0.
void process_probs_cpu(const float* logits, const ProcessParams* params, int64_t rows, int64_t vocab, float* probs_out);

#ifdef SAGUARO_WITH_CUDA
// logits / probs_out: device pointers; params: HOST array of `rows` entries (copied to the device).
// stream: a cudaStream_t (void* so that non-CUDA translation units can include this header).
// Synchronises `stream` to report bad rows as std::invalid_argument.
void process_probs_cuda(const float* logits, const ProcessParams* params, int64_t rows, int64_t vocab,
                        float* probs_out, void* stream);
#endif

}  // namespace saguaro
