#pragma once
// The CUDA side of row_kernels.hpp: the same calls for rows on a CUDA device, run on the block's
// stream (the model's), with the small per-row inputs uploaded and only the results the runtime reads
// copied back. Built only with the CUDA kernels (cuda/row_kernels_device.cu).
#ifdef SAGUARO_WITH_CUDA
#include <cstdint>
#include <vector>

#include "saguaro/logits_processing.hpp"
#include "saguaro/model.hpp"
#include "saguaro/verify.hpp"

namespace saguaro::cuda_rows {

void verify_chain(const Logits& block, int64_t first_row, const int32_t* draft_tokens, const float* q, int32_t n,
                  bool deterministic, const ProcessParams& params, const RowKey& key, int64_t position,
                  int32_t* accepted, int32_t* bonus);
void sample_rows(const Logits& block, const std::vector<int64_t>& rows, const ProcessParams* params,
                 const RowKey* keys, const int64_t* positions, float* probs_out, int32_t* tokens_out,
                 const uint8_t* want_probs);
void fanout_candidates(const Logits& block, int64_t first_row, const int32_t* drafted, const int32_t* fanout,
                       int64_t K, int64_t Fmax, int32_t* out_tokens);
void rows_to_host(const Logits& block, const std::vector<int64_t>& rows, float* out);

}  // namespace saguaro::cuda_rows
#endif
