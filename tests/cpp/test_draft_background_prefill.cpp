// The draft's background prefill runs in chunks and stops reading a prompt whose request has finished
// (cpp/runtime/draft_background_prefill.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

// A draft whose forwards take a while (a CPU reading a long prompt) and which counts what it reads.
class SlowCountingDraft : public ToyModel {
 public:
  using ToyModel::ToyModel;
  std::atomic<int64_t> tokens_read{0};
  std::atomic<int> prefill_calls{0}, extend_calls{0};
  std::atomic<int64_t> largest_prefill{0};  // the most tokens of one sequence in one prefill call

  Logits prefill(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& prompts) override {
    ++prefill_calls;
    for (const auto& p : prompts) {
      tokens_read += static_cast<int64_t>(p.size());
      largest_prefill = std::max<int64_t>(largest_prefill.load(), static_cast<int64_t>(p.size()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return ToyModel::prefill(ids, prompts);
  }
  Logits extend(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& tokens) override {
    ++extend_calls;
    for (const auto& t : tokens) tokens_read += static_cast<int64_t>(t.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return ToyModel::extend(ids, tokens);
  }
};

// A target and a slow counting draft with room for long prompts.
std::pair<std::shared_ptr<ToyModel>, std::shared_ptr<SlowCountingDraft>> long_context_pair() {
  ToyOptions t = target_options(), d = perturbed_draft_options();
  t.max_context = d.max_context = 2048;
  return {std::make_shared<ToyModel>(t), std::make_shared<SlowCountingDraft>(d)};
}

// Generates max_new tokens greedily and checks them against the target's own greedy decoding.
void generate_exactly(Runtime& rt, const ToyModel& target, const std::vector<int32_t>& prompt, int64_t max_new) {
  RequestParams p;
  p.max_new_tokens = max_new;
  EXPECT_EQ(run_all(rt, {prompt}, {p})[0].tokens, greedy_reference(target, prompt, max_new, {}));
}

std::vector<int32_t> long_prompt(size_t n) {
  const auto base = mixed_prompts(1, 24)[0];
  std::vector<int32_t> p;
  while (p.size() < n) p.insert(p.end(), base.begin(), base.end());
  p.resize(n);
  return p;
}

// ssd without the threads hook: the draft prefills the prompt while the target does (no deferral).
// The request wants one token, so it ends at admission, long before the draft's 4 chunks of 256
// tokens would; the draft reads at most two of them (the second may start before the release lands).
TEST(DraftBackgroundPrefill, StopsReadingThePromptOfAFinishedRequest) {
  auto [target, draft] = long_context_pair();
  {
    Runtime rt(target, draft, config_for(Mode::kSsd, 3));
    generate_exactly(rt, *target, long_prompt(1000), 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the time of all 4 chunks and more
  }
  EXPECT_EQ(draft->prefill_calls.load(), 1);
  EXPECT_LE(draft->tokens_read.load(), 512) << "the draft read on after the release";
}

// A request that lasts: its draft reads the whole prompt in chunks of 256 (one prefill, then extends),
// and the output is still the target's.
TEST(DraftBackgroundPrefill, ALastingRequestsPromptIsReadWholeInChunks) {
  auto [target, draft] = long_context_pair();
  Runtime rt(target, draft, config_for(Mode::kSsd, 3));
  generate_exactly(rt, *target, long_prompt(600), 16);
  EXPECT_EQ(draft->prefill_calls.load(), 1);
  EXPECT_EQ(draft->largest_prefill.load(), 256) << "600 tokens: one prefill of 256, then extends of 256 and 88";
  EXPECT_GE(draft->extend_calls.load(), 2);
  EXPECT_GE(draft->tokens_read.load(), 600);
}

}  // namespace
}  // namespace saguaro::testing
