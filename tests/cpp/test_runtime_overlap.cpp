// The point of SSD: the draft's tree work runs while the target verifies. The instrumented target
// blocks inside each verification forward until the draft has run a tree step (bounded wait), so
// a runtime that serialised the two would show no overlapping verification at all. Likewise for
// the prompts' prefills.
#include <gtest/gtest.h>

#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

// SSD over two equal instrumented toy models sharing one log (equal: every lookup hits).
struct InstrumentedSsd {
  std::shared_ptr<CallLog> log = std::make_shared<CallLog>();
  std::shared_ptr<InstrumentedModel> target = std::make_shared<InstrumentedModel>(target_options(), log, true);
  std::shared_ptr<InstrumentedModel> draft = std::make_shared<InstrumentedModel>(target_options(), log, false);

  // Generates greedily from `prompt`, checks the output against the target's own greedy decoding.
  RuntimeMetrics run(const std::vector<int32_t>& prompt, int64_t max_new) {
    RuntimeConfig c = config_for(Mode::kSsd, 3);
    c.backup = BackupKind::kJit;
    Runtime rt(target, draft, c);
    RequestParams p;
    p.max_new_tokens = max_new;
    auto got = run_all(rt, {prompt}, {p});
    EXPECT_EQ(got[0].tokens, greedy_reference(*target, prompt, max_new, {}));
    return rt.metrics();
  }
};

TEST(RuntimeOverlap, DraftTreeRunsWhileTargetVerifies) {
  InstrumentedSsd ssd;
  const RuntimeMetrics m = ssd.run(mixed_prompts(2, 24)[1], 30);
  std::lock_guard<std::mutex> lock(ssd.log->mu);
  ASSERT_EQ(ssd.log->target_extends, 5);
  EXPECT_EQ(ssd.log->target_extends_overlapping_tree, 5);
  EXPECT_GT(m.draft_tree_hidden_s, 0.0);
  EXPECT_GT(m.hidden_fraction(), 0.0);
}

// The draft has its own core under SSD, so it prefills a new prompt while the target prefills it:
// the target's prefill waits (bounded) for the draft's to begin, which a runtime that prefilled the
// draft only at the first backup would never let happen.
TEST(RuntimeOverlap, DraftPrefillsWhileTargetPrefills) {
  InstrumentedSsd ssd;
  ssd.log->waits_left = 0;
  ssd.log->prefill_waits_left = 1;
  ssd.run(mixed_prompts(2, 24)[0], 20);
  std::lock_guard<std::mutex> lock(ssd.log->mu);
  EXPECT_EQ(ssd.log->target_prefills_overlapping_draft, 1);
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
