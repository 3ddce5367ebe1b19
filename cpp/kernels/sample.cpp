#include "saguaro/sample.hpp"

#include <stdexcept>

#include "row_primitives.hpp"

namespace saguaro {

int32_t sample_inverse_cdf(const float* probs, int64_t vocab, double u) {
  return detail::sample_by(vocab, u, [probs](int64_t i) { return probs[i]; });
}

void sample_rows_cpu(const float* logits, const ProcessParams* params, const RowKey* keys,
                     const int64_t* positions, int64_t N, int64_t V, float* probs_out, int32_t* tokens_out) {
  if (N < 0 || V < 1) throw std::invalid_argument("sample_rows: need N >= 0 and V >= 1");
  if (N > 0 && (!logits || !params || !keys || !positions || !probs_out || !tokens_out))
    throw std::invalid_argument("sample_rows: null pointer");
  for (int64_t n = 0; n < N; ++n) validate_process_params(params[n], n, "sample_rows");
  auto& scratch = detail::thread_scratch();
  for (int64_t n = 0; n < N; ++n) {
    float* row = probs_out + n * V;
    const auto rw = detail::process_row(logits + n * V, V, params[n], true, row, scratch, "sample_rows", n, -1);
    const double u = keyed_uniform(keys[n].seed, keys[n].stream, positions[n], kDraft);
    tokens_out[n] = detail::sample_written(rw, scratch, row, V, u);
  }
}

}  // namespace saguaro
