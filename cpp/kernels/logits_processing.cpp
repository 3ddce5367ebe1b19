#include "saguaro/logits_processing.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "row_primitives.hpp"

namespace saguaro {

void validate_process_params(const ProcessParams& p, int64_t row, const char* what) {
  auto fail = [&](const char* field, const char* rule, double value) {
    std::ostringstream s;
    s << what << ": " << field << " of row " << row << " is " << value << "; it must be " << rule;
    throw std::invalid_argument(s.str());
  };
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.f)) fail("temperature", "finite and >= 0 (0 = greedy)", p.temperature);
  if (p.top_k < 0) fail("top_k", ">= 0 (0 = off)", p.top_k);
  if (!(p.top_p > 0.f && p.top_p <= 1.f)) fail("top_p", "in (0, 1] (1 = off)", p.top_p);
  if (!(p.saguaro_c >= 0.f && p.saguaro_c <= 1.f)) fail("saguaro_c", "in [0, 1] (1 = off)", p.saguaro_c);
  if (p.saguaro_topn < 0) fail("saguaro_topn", ">= 0 (0 = off)", p.saguaro_topn);
}

void process_probs_cpu(const float* logits, const ProcessParams* params, int64_t rows, int64_t vocab, float* probs_out) {
  if (rows < 0 || vocab < 1) throw std::invalid_argument("process_probs: need rows >= 0 and vocab >= 1");
  if (rows > 0 && (!logits || !params || !probs_out)) throw std::invalid_argument("process_probs: null pointer");
  for (int64_t r = 0; r < rows; ++r) validate_process_params(params[r], r, "process_probs");
  auto& scratch = detail::thread_scratch();
  for (int64_t r = 0; r < rows; ++r)
    detail::process_row(logits + r * vocab, vocab, params[r], true, probs_out + r * vocab, scratch, "process_probs", r, -1);
}

}  // namespace saguaro
