// The point of SSD: the draft's tree work runs while the target verifies. The instrumented target
// blocks inside each verification forward until the draft has run a tree step (bounded wait), so
// a runtime that serialised the two would show no overlapping verification at all.
#include <gtest/gtest.h>

#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

TEST(RuntimeOverlap, DraftTreeRunsWhileTargetVerifies) {
  auto log = std::make_shared<CallLog>();
  auto target = std::make_shared<InstrumentedModel>(target_options(), log, true);
  auto draft = std::make_shared<InstrumentedModel>(target_options(), log, false);  // equal: every lookup hits
  RuntimeConfig c = config_for(Mode::kSsd, 3);
  c.backup = BackupKind::kJit;
  Runtime rt(target, draft, c);
  RequestParams p;
  p.max_new_tokens = 30;
  auto prompt = mixed_prompts(2, 24)[1];
  auto got = run_all(rt, {prompt}, {p});
  EXPECT_EQ(got[0].tokens, greedy_reference(*target, prompt, 30, {}));
  std::lock_guard<std::mutex> lock(log->mu);
  ASSERT_EQ(log->target_extends, 5);
  EXPECT_EQ(log->target_extends_overlapping_tree, 5);
  const RuntimeMetrics m = rt.metrics();
  EXPECT_GT(m.draft_tree_hidden_s, 0.0);
  EXPECT_GT(m.hidden_fraction(), 0.0);
}

TEST(RuntimeOverlap, SdNeverOverlaps) {
  auto log = std::make_shared<CallLog>();
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(target_options());
  Runtime rt(target, draft, config_for(Mode::kSd, 3));
  RequestParams p;
  p.max_new_tokens = 12;
  run_all(rt, mixed_prompts(1, 24), {p});
  const RuntimeMetrics m = rt.metrics();
  EXPECT_EQ(m.draft_tree_s, 0.0);
  EXPECT_GT(m.draft_chain_s, 0.0);
  EXPECT_EQ(m.hidden_fraction(), 0.0);
}

}  // namespace
}  // namespace saguaro::testing
