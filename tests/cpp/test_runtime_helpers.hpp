#pragma once
// Shared helpers for the runtime tests: run requests to the end, and the plain greedy reference.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "saguaro/runtime.hpp"
#include "test_runtime_toy_models.hpp"

namespace saguaro::testing {

struct Finished {
  std::vector<int32_t> tokens;
  FinishReason reason = FinishReason::kNone;
  std::string error;
  std::vector<std::string> messages;
  RequestMetrics metrics;
};

inline Finished drain(Runtime& rt, int64_t id) {
  Finished f;
  for (;;) {
    RequestUpdate u = rt.poll(id, 30.0);
    f.tokens.insert(f.tokens.end(), u.tokens.begin(), u.tokens.end());
    f.messages.insert(f.messages.end(), u.messages.begin(), u.messages.end());
    if (u.finished) {
      f.reason = u.finish_reason;
      f.error = u.error;
      f.metrics = u.metrics;
      return f;
    }
  }
}

inline std::vector<Finished> run_all(Runtime& rt, const std::vector<std::vector<int32_t>>& prompts,
                                     const std::vector<RequestParams>& params) {
  std::vector<int64_t> ids;
  for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(rt.submit(prompts[i], params[i]));
  std::vector<Finished> out;
  for (int64_t id : ids) out.push_back(drain(rt, id));
  return out;
}

// Autoregressive greedy decoding straight from the model's table.
inline std::vector<int32_t> greedy_reference(const ToyModel& m, std::vector<int32_t> ctx, int64_t max_new,
                                             const std::vector<int32_t>& stops) {
  std::vector<int32_t> out;
  std::vector<float> l(m.vocab_size());
  while (static_cast<int64_t>(out.size()) < max_new) {
    m.logits_after(ctx, l.data());
    int32_t a = 0;
    for (int32_t v = 1; v < static_cast<int32_t>(l.size()); ++v)
      if (l[v] > l[a]) a = v;
    out.push_back(a);
    ctx.push_back(a);
    if (std::find(stops.begin(), stops.end(), a) != stops.end()) break;
  }
  return out;
}

inline std::vector<std::vector<int32_t>> mixed_prompts(size_t n, int64_t vocab) {
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < n; ++i) {
    std::vector<int32_t> p;
    const size_t len = 1 + (i * 5) % 9;  // 1, 6, 2, 7, ...
    for (size_t j = 0; j < len; ++j) p.push_back(static_cast<int32_t>((i * 13 + j * 7 + 3) % vocab));
    prompts.push_back(p);
  }
  return prompts;
}

inline ToyOptions target_options() {
  ToyOptions o;
  o.seed = 1;
  return o;
}
// A draft that agrees with the target often but not always.
inline ToyOptions perturbed_draft_options() {
  ToyOptions o;
  o.seed = 1;
  o.noise_seed = 99;
  o.noise = 1.5;
  return o;
}
inline ToyOptions unrelated_draft_options() {
  ToyOptions o;
  o.seed = 12345;
  return o;
}

// The target and the perturbed draft, both with room for max_context tokens (endless requests,
// context-limit tests).
struct ToyPair {
  std::shared_ptr<ToyModel> target, draft;
};
inline ToyPair toy_pair(int64_t max_context) {
  ToyOptions t = target_options();
  t.max_context = max_context;
  ToyOptions d = perturbed_draft_options();
  d.max_context = max_context;
  return {std::make_shared<ToyModel>(t), std::make_shared<ToyModel>(d)};
}

inline RuntimeConfig config_for(Mode mode, int32_t k = 4) {
  RuntimeConfig c;
  c.mode = mode;
  c.k = k;
  return c;
}

}  // namespace saguaro::testing
