#include "saguaro/row_kernels.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "saguaro/fanout.hpp"
#include "saguaro/row_kernels_cuda.hpp"
#include "saguaro/sample.hpp"

namespace saguaro {

namespace {

// Host rows go to the CPU twins; CUDA rows to cuda_rows; anything else is a contract violation.
bool on_device(const Logits& block) {
  if (block.on_host()) return false;
  if (block.device_type != Logits::kCuda)
    throw std::invalid_argument("logits on device type " + std::to_string(block.device_type) +
                                ": the runtime takes host or CUDA rows (docs/contracts.md §3)");
#ifndef SAGUARO_WITH_CUDA
  throw std::runtime_error(
      "logits on a CUDA device, but this saguaro was built without its CUDA kernels: reinstall it where nvcc "
      "is present, or have the adapter return host tensors");
#endif
  return true;
}

void check_rows(const Logits& block, int64_t first, int64_t count, const char* what) {
  if (first < 0 || count < 0 || first + count > block.rows)
    throw std::logic_error(std::string(what) + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                           ") of a block of " + std::to_string(block.rows));
}

}  // namespace

void verify_chain_where(const Logits& block, int64_t first_row, const int32_t* draft_tokens, const float* q, int32_t n,
                        bool deterministic, const ProcessParams& params, const RowKey& key, int64_t position,
                        int32_t* accepted, int32_t* bonus) {
  check_rows(block, first_row, n + 1, "verify");
  if (on_device(block)) {
#ifdef SAGUARO_WITH_CUDA
    cuda_rows::verify_chain(block, first_row, draft_tokens, q, n, deterministic, params, key, position, accepted, bonus);
#endif
    return;
  }
  const uint8_t det = deterministic ? 1 : 0;
  verify_chain_cpu(block.row(first_row), n > 0 ? draft_tokens : nullptr, q, &n, &det, &params, &key, &position, 1, n,
                   block.vocab, accepted, bonus);
}

void sample_rows_where(const Logits& block, const std::vector<int64_t>& rows, const ProcessParams* params,
                       const RowKey* keys, const int64_t* positions, float* probs_out, int32_t* tokens_out,
                       const uint8_t* want_probs) {
  for (int64_t r : rows) check_rows(block, r, 1, "sample");
  if (rows.empty()) return;
  if (on_device(block)) {
#ifdef SAGUARO_WITH_CUDA
    cuda_rows::sample_rows(block, rows, params, keys, positions, probs_out, tokens_out, want_probs);
#endif
    return;
  }
  (void)want_probs;  // host rows: the CPU twin writes every row in place, nothing is copied
  const int64_t N = static_cast<int64_t>(rows.size()), V = block.vocab;
  if (consecutive_rows(rows)) {
    sample_rows_cpu(block.row(rows[0]), params, keys, positions, N, V, probs_out, tokens_out);
    return;
  }
  std::vector<float> gathered(static_cast<size_t>(N * V));
  for (int64_t i = 0; i < N; ++i) std::memcpy(gathered.data() + i * V, block.row(rows[i]), sizeof(float) * V);
  sample_rows_cpu(gathered.data(), params, keys, positions, N, V, probs_out, tokens_out);
}

void fanout_candidates_where(const Logits& block, int64_t first_row, const int32_t* drafted, const int32_t* fanout,
                             int64_t K, int64_t Fmax, int32_t* out_tokens) {
  check_rows(block, first_row, K + 1, "fan-out");
  if (on_device(block)) {
#ifdef SAGUARO_WITH_CUDA
    cuda_rows::fanout_candidates(block, first_row, drafted, fanout, K, Fmax, out_tokens);
#endif
    return;
  }
  fanout_candidates_cpu(block.row(first_row), drafted, fanout, 1, K, block.vocab, Fmax, out_tokens);
}

std::vector<float> rows_to_host(const Logits& block, const std::vector<int64_t>& rows) {
  for (int64_t r : rows) check_rows(block, r, 1, "copy");
  std::vector<float> out(rows.size() * static_cast<size_t>(block.vocab));
  if (on_device(block)) {
#ifdef SAGUARO_WITH_CUDA
    cuda_rows::rows_to_host(block, rows, out.data());
#endif
    return out;
  }
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(out.data() + i * block.vocab, block.row(rows[i]), sizeof(float) * block.vocab);
  return out;
}

}  // namespace saguaro
