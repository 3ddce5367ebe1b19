#pragma once
// The runtime's kernels, run where the logits live (docs/contracts.md §3, the device-resident
// contract): host rows go to the CPU twins; rows on a CUDA device go to the CUDA twins, on the stream
// the model wrote them on, and only a few bytes per row come back to the host (accepted counts, bonus
// and sampled tokens, fan-out candidates), plus the q rows of sampled rows, which the speculation
// cache keeps on the host. Greedy rows move no probability row at all.
#include <cstdint>
#include <vector>

#include "saguaro/logits_processing.hpp"
#include "saguaro/model.hpp"
#include "saguaro/verify.hpp"

namespace saguaro {

// Rows r0, r0 + 1, ...: one run of a block, read in place (no gather needed).
inline bool consecutive_rows(const std::vector<int64_t>& rows) {
  for (size_t i = 1; i < rows.size(); ++i)
    if (rows[i] != rows[0] + static_cast<int64_t>(i)) return false;
  return true;
}

// One row's chain: target rows [first_row, first_row + n] of `block`. draft_tokens (n) and q (n * V,
// null for greedy or deterministic rows) are host arrays. std::invalid_argument as verify_chain_cpu.
void verify_chain_where(const Logits& block, int64_t first_row, const int32_t* draft_tokens, const float* q, int32_t n,
                        bool deterministic, const ProcessParams& params, const RowKey& key, int64_t position,
                        int32_t* accepted, int32_t* bonus);

// Samples rows `rows` of `block` (one ProcessParams / RowKey / position each) into tokens_out [N] and
// the processed rows into probs_out [N * V] (host). want_probs [N] (null = every row): the rows whose
// probabilities the caller reads; on a device only those are copied to the host.
void sample_rows_where(const Logits& block, const std::vector<int64_t>& rows, const ProcessParams* params,
                       const RowKey* keys, const int64_t* positions, float* probs_out, int32_t* tokens_out,
                       const uint8_t* want_probs);

// Fork candidates of one sequence from its K + 1 trunk rows [first_row, first_row + K] of `block`
// (fanout_candidates_cpu with B = 1); drafted [K], fanout [K + 1], out_tokens [(K + 1) * Fmax] on the host.
void fanout_candidates_where(const Logits& block, int64_t first_row, const int32_t* drafted, const int32_t* fanout,
                             int64_t K, int64_t Fmax, int32_t* out_tokens);

// Copies rows `rows` of `block` to the host (the planted-bias test's unadjusted q; never on the fast path).
std::vector<float> rows_to_host(const Logits& block, const std::vector<int64_t>& rows);

}  // namespace saguaro
