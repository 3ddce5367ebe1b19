#pragma once
// Fan-out candidate selection (docs/algorithm.md §2.1 "Fork"): the likely bonus tokens per position.
#include <cstdint>

namespace saguaro {

// draft_logits [B, K+1, V] (L_0..L_K), drafted [B, K], fanout [B, K+1] (F_j >= 0),
// out_tokens [B, K+1, Fmax], position-major: for each j the top-F_j tokens of L_j by logit descending
// (ties: lower id first), excluding drafted[b][j] for j < K, then -1 padding.
// Tokens with logit -inf (probability 0, never a bonus token) are not candidates; a drafted id < 0
// excludes nothing (a row with fewer than K drafts). NaN or +inf logits, F_j < 0 or F_j > Fmax, or a
// drafted id >= V throw std::invalid_argument.
void fanout_candidates_cpu(const float* draft_logits, const int32_t* drafted, const int32_t* fanout,
                           int64_t B, int64_t K, int64_t V, int64_t Fmax, int32_t* out_tokens);

#ifdef SAGUARO_WITH_CUDA
// draft_logits, drafted, out_tokens: device pointers; fanout: HOST array [B, K+1]. stream: cudaStream_t.
void fanout_candidates_cuda(const float* draft_logits, const int32_t* drafted, const int32_t* fanout,
                            int64_t B, int64_t K, int64_t V, int64_t Fmax, int32_t* out_tokens, void* stream);
#endif

}  // namespace saguaro
