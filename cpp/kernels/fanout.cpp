#include "saguaro/fanout.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "row_primitives.hpp"

namespace saguaro {

void fanout_candidates_cpu(const float* draft_logits, const int32_t* drafted, const int32_t* fanout,
                           int64_t B, int64_t K, int64_t V, int64_t Fmax, int32_t* out_tokens) {
  if (B < 0 || K < 0 || V < 1 || Fmax < 0)
    throw std::invalid_argument("fanout_candidates: need B >= 0, K >= 0, V >= 1, Fmax >= 0");
  if (B > 0 && (!draft_logits || !fanout || !out_tokens || (K > 0 && !drafted)))
    throw std::invalid_argument("fanout_candidates: null pointer");
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j <= K; ++j) {
      const int32_t f = fanout[b * (K + 1) + j];
      if (f < 0 || f > Fmax) {
        std::ostringstream s;
        s << "fanout_candidates: fanout[" << b << "][" << j << "] = " << f << " must be in [0, Fmax=" << Fmax << "]";
        throw std::invalid_argument(s.str());
      }
      if (j < K && drafted[b * K + j] >= V) {
        std::ostringstream s;
        s << "fanout_candidates: drafted[" << b << "][" << j << "] = " << drafted[b * K + j]
          << " is not a token id below V=" << V;
        throw std::invalid_argument(s.str());
      }
    }
  }
  auto& scratch = detail::thread_scratch();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j <= K; ++j) {
      const float* row = draft_logits + (b * (K + 1) + j) * V;
      detail::check_row(detail::scan_row(row, V), "fanout_candidates", b, j);
      int32_t* out = out_tokens + (b * (K + 1) + j) * Fmax;
      const int32_t exclude = (j < K) ? drafted[b * K + j] : -1;
      const int64_t n = detail::select_top(row, V, fanout[b * (K + 1) + j], exclude, out, scratch);
      std::fill(out + n, out + Fmax, -1);
    }
  }
}

}  // namespace saguaro
