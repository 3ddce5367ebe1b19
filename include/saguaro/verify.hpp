#pragma once
// Chain verification of a speculation (docs/contracts.md §2, docs/algorithm.md §1, §3).
#include <cstdint>

#include "saguaro/logits_processing.hpp"

namespace saguaro {

struct RowKey { uint64_t seed = 0; uint64_t stream = 0; };

// target_logits [B, K+1, V]; draft_tokens [B, K]; q [B, K, V] = the exact probability rows the draft
// tokens were sampled from (may be null when every row is greedy or deterministic); num_draft [B]
// (0..K drafts valid in this row); deterministic [B] (1 -> q = one-hot of the proposal); params [B]
// (the TARGET's processing; saguaro fields ignored); keys [B]; positions [B] = absolute position of x1.
// Out: accepted [B] (0..num_draft) and bonus [B].
// Greedy rows (temperature 0): accept x_i while x_i == argmax p_i; bonus = argmax at the first mismatch.
// Sampled rows: accept x_i iff u(kAccept, pos_i) * q_i(x_i) < p_i(x_i); at the first rejection draw from
// norm(max(p_i - q_i, 0)) with u(kResidual, pos_i) (all zero -> from p_i); all accepted -> from p_n.
// Deterministic rows: accept iff u(kAccept) < p_i(x_i); on rejection draw from p_i with x_i removed.
// Throws std::invalid_argument for bad arguments and for NaN / +inf / no finite logit in a used target row.
void verify_chain_cpu(const float* target_logits, const int32_t* draft_tokens, const float* q,
                      const int32_t* num_draft, const uint8_t* deterministic, const ProcessParams* params,
                      const RowKey* keys, const int64_t* positions, int64_t B, int64_t K, int64_t V,
                      int32_t* accepted, int32_t* bonus);

#ifdef SAGUARO_WITH_CUDA
// Device pointers: target_logits, draft_tokens, q, accepted, bonus. HOST pointers (per-row, small,
// copied to the device): num_draft, deterministic, params, keys, positions. stream: cudaStream_t.
// Synchronises `stream` (bad rows are reported as std::invalid_argument).
void verify_chain_cuda(const float* target_logits, const int32_t* draft_tokens, const float* q,
                       const int32_t* num_draft, const uint8_t* deterministic, const ProcessParams* params,
                       const RowKey* keys, const int64_t* positions, int64_t B, int64_t K, int64_t V,
                       int32_t* accepted, int32_t* bonus, void* stream);
#endif

}  // namespace saguaro
