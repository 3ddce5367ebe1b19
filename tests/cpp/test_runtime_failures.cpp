// A failing draft loses no request; a failing target request fails alone.
#include <gtest/gtest.h>

#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

bool mentions(const std::vector<std::string>& messages, const std::string& what) {
  for (const auto& m : messages)
    if (m.find(what) != std::string::npos) return true;
  return false;
}

TEST(RuntimeFailures, DraftThrowingMidRunFinishesRequestsAutoregressively) {
  for (Mode mode : {Mode::kSd, Mode::kSsd}) {
    for (int64_t fail_from : {1, 4, 9}) {
      auto target = std::make_shared<ToyModel>(target_options());
      auto draft = std::make_shared<ThrowingModel>(perturbed_draft_options(), fail_from);
      RuntimeConfig c = config_for(mode, 3);
      c.backup = BackupKind::kJit;  // every round calls the draft, so it fails before the requests end
      Runtime rt(target, draft, c);
      auto prompts = mixed_prompts(4, target->vocab_size());
      RequestParams p;
      p.max_new_tokens = 25;
      auto got = run_all(rt, prompts, std::vector<RequestParams>(4, p));
      int told = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].reason, FinishReason::kLength) << mode_name(mode) << " fail_from " << fail_from;
        EXPECT_EQ(got[i].tokens, greedy_reference(*target, prompts[i], 25, {}));
        told += mentions(got[i].messages, "injected failure");
      }
      // the requests running when it failed are told why they slowed down (one that finished
      // earlier, possible when the requests are admitted one by one, is not)
      EXPECT_GE(told, 1);
      const RuntimeMetrics m = rt.metrics();
      EXPECT_EQ(m.draft_failures, 1);
      EXPECT_EQ(m.mode, "ar");
      // later requests are served autoregressively
      EXPECT_EQ(run_all(rt, {prompts[0]}, {p})[0].tokens, greedy_reference(*target, prompts[0], 25, {}));
    }
  }
}

TEST(RuntimeFailures, DraftThrowingWithStrictFailsTheRequestsWithTheMessage) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ThrowingModel>(perturbed_draft_options(), 4);
  RuntimeConfig c = config_for(Mode::kSsd, 3);
  c.strict = true;
  Runtime rt(target, draft, c);
  auto prompts = mixed_prompts(3, target->vocab_size());
  RequestParams p;
  p.max_new_tokens = 25;
  for (auto& f : run_all(rt, prompts, std::vector<RequestParams>(3, p))) {
    EXPECT_EQ(f.reason, FinishReason::kError);
    EXPECT_NE(f.error.find("injected failure"), std::string::npos) << f.error;
  }
  EXPECT_EQ(run_all(rt, {prompts[0]}, {p})[0].reason, FinishReason::kError) << "strict: no silent fallback later";
  EXPECT_EQ(target->live_sequences(), 0);
}

TEST(RuntimeFailures, TargetNanFailsOnlyThatRequest) {
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    auto prompts = mixed_prompts(3, 24);
    // poison the second request (the second sequence prefilled) once it generated a few tokens
    auto target = std::make_shared<NanModel>(target_options(), 2, static_cast<int64_t>(prompts[1].size()) + 4);
    auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
    Runtime rt(target, draft, config_for(mode, 3));
    RequestParams p;
    p.max_new_tokens = 20;
    auto got = run_all(rt, prompts, std::vector<RequestParams>(3, p));
    EXPECT_EQ(got[1].reason, FinishReason::kError) << mode_name(mode);
    EXPECT_NE(got[1].error.find("NaN"), std::string::npos) << got[1].error;
    for (size_t i : {0u, 2u}) {
      EXPECT_EQ(got[i].reason, FinishReason::kLength) << mode_name(mode);
      EXPECT_EQ(got[i].tokens, greedy_reference(*target, prompts[i], 20, {}));
    }
    rt.close();
    EXPECT_EQ(target->live_sequences(), 0);
    EXPECT_EQ(draft->live_sequences(), 0);
  }
}

TEST(RuntimeFailures, PromptLongerThanTheContextFailsOnlyThatRequest) {
  ToyOptions small = target_options();
  small.max_context = 16;
  auto target = std::make_shared<ToyModel>(small);
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  Runtime rt(target, draft, config_for(Mode::kSsd, 3));
  RequestParams p;
  p.max_new_tokens = 5;
  std::vector<int32_t> too_long(16, 3);
  std::vector<int32_t> fine{1, 2, 3};
  auto got = run_all(rt, {too_long, fine}, {p, p});
  EXPECT_EQ(got[0].reason, FinishReason::kError);
  EXPECT_NE(got[0].error.find("does not fit the context"), std::string::npos) << got[0].error;
  EXPECT_EQ(got[1].tokens, greedy_reference(*target, fine, 5, {}));
}

}  // namespace
}  // namespace saguaro::testing
