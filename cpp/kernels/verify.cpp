#include "saguaro/verify.hpp"

#include <sstream>
#include <stdexcept>

#include "row_primitives.hpp"
#include "saguaro/philox.hpp"
#include "saguaro/sample.hpp"

namespace saguaro {

namespace {

[[noreturn]] void bad(const std::string& message) { throw std::invalid_argument("verify_chain: " + message); }

void validate(const int32_t* draft_tokens, const float* q, const int32_t* num_draft, const uint8_t* deterministic,
              const ProcessParams* params, int64_t B, int64_t K, int64_t V) {
  for (int64_t b = 0; b < B; ++b) {
    validate_process_params(params[b], b, "verify_chain");
    const int32_t n = num_draft[b];
    if (n < 0 || n > K) {
      std::ostringstream s;
      s << "num_draft[" << b << "] = " << n << " must be in [0, K=" << K << "]";
      bad(s.str());
    }
    for (int32_t i = 0; i < n; ++i) {
      const int32_t x = draft_tokens[b * K + i];
      if (x < 0 || x >= V) {
        std::ostringstream s;
        s << "draft_tokens[" << b << "][" << i << "] = " << x << " is not a token id in [0, V=" << V << ")";
        bad(s.str());
      }
    }
    const bool det = deterministic && deterministic[b] != 0;
    if (!q && n > 0 && !det && params[b].temperature != 0.f) {
      std::ostringstream s;
      s << "row " << b << " is sampled with a non-deterministic proposal but q is null";
      bad(s.str());
    }
  }
}

}  // namespace

void verify_chain_cpu(const float* target_logits, const int32_t* draft_tokens, const float* q,
                      const int32_t* num_draft, const uint8_t* deterministic, const ProcessParams* params,
                      const RowKey* keys, const int64_t* positions, int64_t B, int64_t K, int64_t V,
                      int32_t* accepted, int32_t* bonus) {
  if (B < 0 || K < 0 || V < 1) bad("need B >= 0, K >= 0, V >= 1");
  if (B > 0 && (!target_logits || !num_draft || !params || !keys || !positions || !accepted || !bonus ||
                (K > 0 && !draft_tokens)))
    bad("null pointer");
  validate(draft_tokens, q, num_draft, deterministic, params, B, K, V);
  auto& scratch = detail::thread_scratch();
  scratch.probs.resize(static_cast<size_t>(V));
  float* p = scratch.probs.data();
  for (int64_t b = 0; b < B; ++b) {
    const int32_t n = num_draft[b];
    const int32_t* x = draft_tokens + b * K;
    const float* logits_b = target_logits + b * (K + 1) * V;
    const int64_t pos = positions[b];
    const RowKey key = keys[b];
    if (params[b].temperature == 0.f) {
      // Greedy: the target is one-hot, so equality acceptance is exact; only the argmax is needed.
      for (int32_t i = 0; i <= n; ++i) {
        const detail::RowScan scan = detail::scan_row(logits_b + i * V, V);
        detail::check_row(scan, "verify_chain", b, i);
        if (i == n || x[i] != scan.argmax) {
          accepted[b] = i;
          bonus[b] = scan.argmax;
          break;
        }
      }
      continue;
    }
    ProcessParams target = params[b];
    target.saguaro_c = 1.f;  // Saguaro shapes the draft's proposal only
    target.saguaro_topn = 0;
    const bool det = deterministic && deterministic[b] != 0;
    int32_t i = 0;
    int32_t token = -1;
    for (; i < n; ++i) {
      const detail::RowWeights rw = detail::row_weights(logits_b + i * V, V, target, false, scratch, "verify_chain", b, i);
      const int32_t xi = x[i];
      const float px = detail::prob_of(rw, scratch, xi);
      const double u = keyed_uniform(key.seed, key.stream, pos + i, kAccept);
      const float* qi = det ? nullptr : q + (b * K + i) * V;
      if (det) {
        if (u < static_cast<double>(px)) continue;
      } else {
        const float qx = qi[xi];
        if (!(qx >= 0.f && qx <= 1.f)) {
          std::ostringstream s;
          s << "q[" << b << "][" << i << "][" << xi << "] = " << qx << " is not a probability";
          bad(s.str());
        }
        if (u * static_cast<double>(qx) < static_cast<double>(px)) continue;
      }
      // Rejected: only now is the whole row needed.
      detail::write_probs(rw, scratch, V, p);
      const double r = keyed_uniform(key.seed, key.stream, pos + i, kResidual);
      if (det) {
        token = detail::sample_by(V, r, [p, xi](int64_t t) { return t == xi ? 0.f : p[t]; });
      } else {
        token = detail::sample_by(V, r, [p, qi](int64_t t) {
          const float d = p[t] - qi[t];
          return d > 0.f ? d : 0.f;
        });
      }
      if (token < 0) token = sample_inverse_cdf(p, V, r);
      break;
    }
    if (i == n) {
      const auto rw = detail::process_row(logits_b + n * V, V, target, false, p, scratch, "verify_chain", b, n);
      token = detail::sample_written(rw, scratch, p, V, keyed_uniform(key.seed, key.stream, pos + n, kResidual));
    }
    accepted[b] = i;
    bonus[b] = token;
  }
}

}  // namespace saguaro
