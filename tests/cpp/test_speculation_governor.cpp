// The speculation governor: batch 1 and a disabled governor always speculate; otherwise both arms are
// measured (plain first), the faster one runs, the slower one is probed again and a change of rates is followed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "saguaro/speculation_governor.hpp"
#include "test_runtime_helpers.hpp"

namespace saguaro {
namespace {

using testing::ToyModel;
using testing::ToyOptions;

// A toy model whose forwards take time: a fixed cost per call plus a cost per logits row, so a
// K+1-token verification of a large batch costs about K+1 times a plain step (a compute-bound target).
class TimedToy : public ToyModel {
 public:
  TimedToy(ToyOptions o, double per_call_s, double per_row_s)
      : ToyModel(std::move(o)), per_call_s_(per_call_s), per_row_s_(per_row_s) {}
  void after_call(const char* what, const std::vector<int64_t>& ids, std::vector<float>* logits) override {
    ToyModel::after_call(what, ids, logits);
    const double rows = static_cast<double>(logits->size()) / static_cast<double>(vocab_size());
    std::this_thread::sleep_for(std::chrono::duration<double>(per_call_s_ + rows * per_row_s_));
  }

 private:
  double per_call_s_, per_row_s_;
};

// Greedy batch of 8 on a timed pair: every output is the target's greedy one; returns the metrics.
RuntimeMetrics run_timed_batch(Mode mode, BackupKind backup, double target_per_call, double target_per_row,
                               ToyOptions draft_options, double draft_per_call = 0.0005, double draft_per_row = 0.0005) {
  auto target = std::make_shared<TimedToy>(testing::target_options(), target_per_call, target_per_row);
  auto draft = std::make_shared<TimedToy>(std::move(draft_options), draft_per_call, draft_per_row);
  RuntimeConfig c = testing::config_for(mode, 3);
  c.backup = backup;
  const auto prompts = testing::mixed_prompts(8, target->vocab_size());
  RequestParams p;
  p.max_new_tokens = 60;
  Runtime rt(target, draft, c);
  const auto got = testing::run_all(rt, prompts, std::vector<RequestParams>(prompts.size(), p));
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(got[i].tokens, testing::greedy_reference(*target, prompts[i], p.max_new_tokens, {})) << "request " << i;
  return rt.metrics();
}

// Runs `rounds` rounds at `batch`, feeding each arm its rate (tokens per second); returns how many speculated.
int run(SpeculationGovernor& g, int64_t batch, int rounds, double spec_rate, double plain_rate) {
  int speculated = 0;
  for (int i = 0; i < rounds; ++i) {
    const SpeculationGovernor::Decision d = g.decide(batch);
    speculated += d.speculate ? 1 : 0;
    g.observe(d, d.speculate ? static_cast<int64_t>(spec_rate) : static_cast<int64_t>(plain_rate), 1.0);
  }
  return speculated;
}

TEST(SpeculationGovernor, DisabledOrBatchOneAlwaysSpeculates) {
  SpeculationGovernor off(false);
  EXPECT_EQ(run(off, 8, 100, 1, 100), 100);
  EXPECT_EQ(off.plain_rounds(), 0);
  SpeculationGovernor on(true);
  EXPECT_EQ(run(on, 1, 100, 1, 100), 100);
}

TEST(SpeculationGovernor, ShortRequestsOfEveryBatchSizeStillMeasureSpeculation) {
  // A cold engine under many short requests: the batch changes every round (2, 3, 5, 1, 4, 2, ...).
  // Nothing measured plain faster anywhere, so no size counts as a dip: each warms up as usual, and
  // where speculation is faster it runs.
  SpeculationGovernor g(true);
  const int64_t sizes[] = {2, 3, 5, 1, 4, 2, 6, 3, 1, 2};
  int speculated = 0, rounds = 0;
  for (int i = 0; i < 60; ++i)
    for (const int64_t b : sizes) {
      speculated += run(g, b, 1, 30, 10);
      ++rounds;
    }
  EXPECT_GT(speculated, rounds / 2);
}

TEST(SpeculationGovernor, ALoneRequestBetweenWavesOfLoadRunsPlainForItsFirstRounds) {
  // Waves: 4 requests finish together, the next wave's first arrives alone, the others a round later.
  SpeculationGovernor g(true);
  constexpr int warm = SpeculationGovernor::kWarmRounds;
  EXPECT_FALSE(g.backing_off(1)) << "a fresh engine: batch 1 speculates from the start";
  run(g, 4, 30, 10, 30);  // bucket 3-4: plain measured faster
  ASSERT_TRUE(g.backing_off(4));
  EXPECT_TRUE(g.backing_off(1)) << "a request admitted alone now is a dip: its draft prefill waits";
  EXPECT_EQ(run(g, 1, 1, 10, 30), 0) << "the dip's round runs plain";
  EXPECT_EQ(run(g, 4, 5, 10, 30), 0);
  // a batch of one that lasts speculates again after kWarmRounds plain rounds, and from then on
  EXPECT_EQ(run(g, 1, warm, 10, 30), 0);
  EXPECT_FALSE(g.backing_off(1));
  EXPECT_EQ(run(g, 1, 10, 10, 30), 10);
  // where the load before speculated, batch 1 does at once
  SpeculationGovernor h(true);
  run(h, 4, 30, 30, 10);
  EXPECT_FALSE(h.backing_off(1));
  EXPECT_EQ(run(h, 1, 1, 30, 10), 1);
}

TEST(SpeculationGovernor, MeasuresBothArmsThenRunsTheFasterAndProbesTheSlower) {
  SpeculationGovernor g(true);
  constexpr int warm = SpeculationGovernor::kWarmRounds;
  // warm-up: plain rounds first, then speculating ones (here faster, so all kWarmRounds of them)
  for (int i = 0; i < warm; ++i) {
    const auto d = g.decide(4);
    ASSERT_FALSE(d.speculate);
    g.observe(d, 30, 1.0);
  }
  for (int i = 0; i < warm; ++i) {
    const auto d = g.decide(4);
    ASSERT_TRUE(d.speculate);
    g.observe(d, 40, 1.0);
  }
  EXPECT_DOUBLE_EQ(g.rate(4, true), 40.0);
  EXPECT_DOUBLE_EQ(g.rate(4, false), 30.0);
  // speculation has since become 3x slower (decayed rates follow within a few rounds): plain runs,
  // with a probe of speculation every kProbeEvery rounds
  for (int i = 0; i < 20; ++i) g.observe(SpeculationGovernor::Decision{4, true}, 10, 1.0);
  EXPECT_NEAR(g.rate(4, true), 10.0, 0.5);
  EXPECT_DOUBLE_EQ(g.rate(4, false), 30.0);
  const int n = 10 * SpeculationGovernor::kProbeEvery;
  const int speculated = run(g, 4, n, 10, 30);
  EXPECT_GT(speculated, 0);
  EXPECT_LT(speculated, n / 5);
  // the batch sizes of one bucket share the measurement; another bucket is measured on its own
  EXPECT_FALSE(g.decide(3).speculate);
  EXPECT_FALSE(g.decide(2).speculate) << "bucket 2 starts its own warm-up, plain first";
}

TEST(SpeculationGovernor, AFirstSpeculatingRoundSlowerThanPlainEndsTheWarmUp) {
  // Where speculation does not pay (SSD's target on one core, a compute-bound batch) its warm-up costs
  // one dear round, not kWarmRounds
  SpeculationGovernor g(true);
  constexpr int warm = SpeculationGovernor::kWarmRounds;
  EXPECT_EQ(run(g, 4, warm, 10, 30), 0) << "plain rounds first";
  EXPECT_EQ(run(g, 4, 1, 10, 30), 1);
  EXPECT_EQ(run(g, 4, 20, 10, 30), 0) << "it was slower: plain until a probe";
  // so do the probes: each is one speculating round while speculation stays slower
  int probes = 0, longest = 0, streak = 0;
  for (int i = 0; i < 40 * SpeculationGovernor::kProbeEvery; ++i) {
    const bool speculated = run(g, 4, 1, 10, 30) == 1;
    streak = speculated ? streak + 1 : 0;
    longest = std::max(longest, streak);
    probes += speculated && streak == 1 ? 1 : 0;
  }
  EXPECT_GT(probes, 1);
  EXPECT_EQ(longest, 1) << "a probe that found speculation slower went on";
  // a first speculating round that is faster goes on warming speculation up, and speculation runs
  SpeculationGovernor h(true);
  EXPECT_EQ(run(h, 4, warm, 30, 10), 0);
  EXPECT_EQ(run(h, 4, 20, 30, 10), 20);
}

TEST(SpeculationGovernor, ARoundIsObservedForTheBatchSizeItWasDecidedFor) {
  // Rounds decided for 3 rows (bucket 3-4) that end with 2 (a row failed or finished while the
  // speculations were supplied, bucket 2). Observed for the post-round size, as the target round
  // once did, bucket 3-4 would never finish its warm-up (it would speculate forever, whatever plain
  // rounds measure) and bucket 2 would be measured with rounds it never decided.
  SpeculationGovernor g(true);
  constexpr int warm = SpeculationGovernor::kWarmRounds;
  for (int i = 0; i < warm; ++i) {
    const auto d = g.decide(3);
    ASSERT_FALSE(d.speculate) << "warm-up round " << i << " is plain";
    EXPECT_EQ(d.batch, 3);
    g.observe(d, 30, 1.0);  // (the round ended with 2 rows: the decision keeps its 3)
  }
  for (int i = 0; i < warm; ++i) {
    const auto d = g.decide(3);
    ASSERT_TRUE(d.speculate) << "warm-up round " << warm + i << " speculates";
    g.observe(d, 40, 1.0);
  }
  EXPECT_DOUBLE_EQ(g.rate(3, true), 40.0);
  EXPECT_DOUBLE_EQ(g.rate(4, false), 30.0);
  EXPECT_DOUBLE_EQ(g.rate(2, true), 0.0);
  EXPECT_DOUBLE_EQ(g.rate(2, false), 0.0);
  EXPECT_EQ(g.plain_rounds(), warm);
  // measured: speculation is faster at 3-4 rows, so it runs
  EXPECT_TRUE(g.decide(3).speculate);
  EXPECT_FALSE(g.decide(2).speculate) << "bucket 2 starts its own warm-up, plain first";
}

TEST(SpeculationGovernor, ProbesLessOftenWhileTheSlowerArmStaysSlower) {
  // Plain is 3x faster and stays so: each probe that confirms it doubles the interval to the next, up
  // to kMaxProbeBackoff times (a probe costs what the slower arm loses in its rounds).
  SpeculationGovernor g(true);
  constexpr int warm = SpeculationGovernor::kWarmRounds;
  const int base = 3 * SpeculationGovernor::kProbeEvery;  // the interval at 3x
  run(g, 8, 2 * warm + base * (1 + 2 + 4), 10, 30);       // warm-up and the probes that back off
  const int window = 4 * base * SpeculationGovernor::kMaxProbeBackoff;
  const int speculated = run(g, 8, window, 10, 30);
  EXPECT_GT(speculated, 0) << "the slower arm is still probed";
  EXPECT_LE(speculated, 5 * warm) << "at most one probe per backed-off interval (without the backoff: "
                                  << window / base * warm << " rounds)";
}

// Like run(), with each speculating round taking spec_seconds (a dear probe: SSD's draft catching up).
int run_timed(SpeculationGovernor& g, int64_t batch, int rounds, double spec_tokens, double spec_seconds,
              double plain_rate) {
  int speculated = 0;
  for (int i = 0; i < rounds; ++i) {
    const SpeculationGovernor::Decision d = g.decide(batch);
    speculated += d.speculate ? 1 : 0;
    if (d.speculate) g.observe(d, static_cast<int64_t>(spec_tokens), spec_seconds);
    else g.observe(d, static_cast<int64_t>(plain_rate), 1.0);
  }
  return speculated;
}

TEST(SpeculationGovernor, ProbesNoMoreOftenThanTheirMeasuredCostFitsTheBudget) {
  // Plain: 30 tokens a second. A speculating round commits 10 tokens in 5 s: 5 - 10/30 s lost each time.
  // The count rule alone would probe every 4 x kProbeEvery rounds; the budget allows one probe per
  // (lost seconds) / kProbeBudget seconds of rounds, times the backoff.
  SpeculationGovernor g(true);
  constexpr int warm = SpeculationGovernor::kWarmRounds;
  EXPECT_EQ(run_timed(g, 4, warm, 10, 5.0, 30), 0);
  EXPECT_EQ(run_timed(g, 4, 1, 10, 5.0, 30), 1) << "the warm-up's one speculating round, slower: its end";
  const double lost = 5.0 - 10.0 / 30.0;
  const int until_affordable = static_cast<int>(lost / SpeculationGovernor::kProbeBudget);  // 1 s rounds
  ASSERT_GT(until_affordable, 4 * SpeculationGovernor::kProbeEvery);
  EXPECT_EQ(run_timed(g, 4, until_affordable - 10, 10, 5.0, 30), 0) << "not yet affordable";
  EXPECT_EQ(run_timed(g, 4, 20, 10, 5.0, 30), 1) << "then one probe round";
  // a cheap probe (1 s for 10 tokens: 0.67 s lost) is bounded by the count rule instead, as before
  SpeculationGovernor h(true);
  run_timed(h, 4, warm + 1, 10, 1.0, 30);
  EXPECT_GE(run_timed(h, 4, 4 * SpeculationGovernor::kProbeEvery, 10, 1.0, 30), 1);
}

TEST(SpeculationGovernor, ALargerBatchStartsPlainWhereASmallerOneMeasuredPlainFaster) {
  SpeculationGovernor g(true);
  run(g, 2, 20, 10, 30);  // batch 2: both arms measured, plain 3x faster
  // batch 16 (bucket 9-16) has never run: plain rounds, and speculation is never probed there (its
  // verification is only dearer than at batch 2): it follows batch 2's verdict
  const int until_probe = SpeculationGovernor::kWarmRounds + 4 * SpeculationGovernor::kProbeEvery - 1;
  EXPECT_EQ(run(g, 16, 4 * until_probe, 10, 30), 0);
  EXPECT_DOUBLE_EQ(g.rate(16, false), 30.0);
  EXPECT_DOUBLE_EQ(g.rate(16, true), 0.0);
  EXPECT_TRUE(g.backing_off(16));
  // batch 2's own probes find speculation faster (acceptance rose): batch 16 then warms it up
  run(g, 2, 400, 30, 10);
  ASSERT_GT(g.rate(2, true), SpeculationGovernor::kLargerBatchMargin * g.rate(2, false));
  EXPECT_EQ(run(g, 16, SpeculationGovernor::kWarmRounds, 60, 30), SpeculationGovernor::kWarmRounds);
  EXPECT_FALSE(g.backing_off(16)) << "and measured faster there";
  // a batch where both arms were measured (plain faster) stops probing speculation once a smaller batch
  // measured plain faster too
  SpeculationGovernor m(true);
  run(m, 16, 20, 10, 30);  // cold, below kColdPlainBucket's probe: plain only
  run(m, 4, 20, 10, 30);
  EXPECT_EQ(run(m, 16, 50 * SpeculationGovernor::kProbeEvery, 10, 30), 0);
  // where the smaller batch measured speculation clearly faster, a larger one warms speculation up first
  SpeculationGovernor h(true);
  run(h, 2, 20, 30, 10);
  EXPECT_EQ(run(h, 16, SpeculationGovernor::kWarmRounds, 30, 10), SpeculationGovernor::kWarmRounds);
  EXPECT_EQ(run(h, 16, SpeculationGovernor::kWarmRounds, 30, 10), 0) << "then plain rounds";
  EXPECT_EQ(run(h, 16, 20, 30, 10), 20);
  // a narrow win below (under kLargerBatchMargin) does not carry over: the larger batch starts plain
  SpeculationGovernor narrow(true);
  run(narrow, 4, 20, 11, 10);
  EXPECT_TRUE(narrow.decide(4).speculate) << "at its own size the measured winner runs";
  EXPECT_FALSE(narrow.decide(16).speculate);
  EXPECT_TRUE(narrow.backing_off(16));
}

TEST(SpeculationGovernor, BacksOffWherePlainRoundsComeFirstOrMeasuredFaster) {
  SpeculationGovernor off(false);
  run(off, 8, 50, 10, 30);
  EXPECT_FALSE(off.backing_off(8)) << "a disabled governor always speculates";
  SpeculationGovernor g(true);
  EXPECT_TRUE(g.backing_off(4)) << "nothing measured yet: the warm-up's plain rounds come first";
  run(g, 4, SpeculationGovernor::kWarmRounds, 10, 30);
  EXPECT_TRUE(g.backing_off(4)) << "speculation not measured yet";
  run(g, 4, 1, 10, 30);
  EXPECT_TRUE(g.backing_off(4)) << "speculation measured slower";
  EXPECT_TRUE(g.backing_off(8)) << "an unmeasured larger batch follows the smaller one";
  EXPECT_TRUE(g.backing_off(1)) << "batch 1 right after a size that backs off: a dip (below)";
  // a smaller batch is not implied: batch 2 measures speculation faster on its own, and speculates
  run(g, 2, 20, 30, 10);
  EXPECT_FALSE(g.backing_off(2));
  EXPECT_TRUE(g.backing_off(4));
  SpeculationGovernor h(true);
  run(h, 4, 50, 30, 10);
  EXPECT_FALSE(h.backing_off(4)) << "speculation measured faster";
  EXPECT_FALSE(h.backing_off(16)) << "and by the margin: a larger batch warms speculation up first";
}

TEST(SpeculationGovernor, ATransientBatchSizeDoesNotWarmSpeculationUp) {
  // Under load the batch dips for a round while requests finish and others join: 4, 4, 4, 2, 4, ...
  // Bucket 2's rounds run plain (and are measured), but speculation's warm-up there waits until a batch
  // of 2 lasts kWarmRounds rounds in a row.
  SpeculationGovernor g(true);
  run(g, 4, 20, 10, 30);  // bucket 3-4 measured: plain faster
  int speculated_at_two = 0;
  for (int i = 0; i < 40; ++i) {
    run(g, 4, 3, 10, 30);
    speculated_at_two += run(g, 2, 1, 10, 30);
  }
  EXPECT_EQ(speculated_at_two, 0);
  EXPECT_DOUBLE_EQ(g.rate(2, false), 30.0);
  EXPECT_DOUBLE_EQ(g.rate(2, true), 0.0);
  // a batch of 2 that lasts is measured like any other: its plain rounds are done, and its first
  // speculating round comes once kWarmRounds rounds in a row were at 2 (the last dip began the streak)
  EXPECT_EQ(run(g, 2, SpeculationGovernor::kWarmRounds - 1, 30, 10), 0);
  EXPECT_EQ(run(g, 2, 20, 30, 10), 20);
}

TEST(SpeculationGovernor, AColdLargeBatchStartsPlainAndMeasuresOneSpeculatingRoundAtItsFirstProbe) {
  // Nothing measured below batch 16 (a burst of requests on a fresh engine): plain rounds, the draft's
  // prefill deferred meanwhile, and a single speculating round at the first probe.
  const int until_probe = SpeculationGovernor::kWarmRounds + 4 * SpeculationGovernor::kProbeEvery - 1;
  SpeculationGovernor g(true);
  EXPECT_TRUE(g.backing_off(16));
  EXPECT_EQ(run(g, 16, until_probe, 10, 30), 0);
  EXPECT_TRUE(g.backing_off(16));
  EXPECT_EQ(run(g, 16, 1, 10, 30), 1);
  EXPECT_EQ(run(g, 16, 20, 10, 30), 0) << "it was slower: plain until a probe";
  EXPECT_TRUE(g.backing_off(16));
  // where that round was faster, speculation's warm-up goes on and it runs
  SpeculationGovernor h(true);
  EXPECT_EQ(run(h, 16, until_probe, 30, 10), 0);
  EXPECT_EQ(run(h, 16, 20, 30, 10), 20);
  EXPECT_FALSE(h.backing_off(16));
  // below kColdPlainBucket a cold batch measures speculation right after its plain warm-up
  SpeculationGovernor small(true);
  EXPECT_TRUE(small.backing_off(4)) << "its plain rounds come first";
  EXPECT_EQ(run(small, 4, SpeculationGovernor::kWarmRounds, 10, 30), 0);
  EXPECT_EQ(run(small, 4, 1, 10, 30), 1);
}

TEST(SpeculationGovernor, ASpeculationPostponedForTheDraftsCatchUpIsMeasuredAfterItWithItsCost) {
  // A cold batch of 16 reaches its first probe, but the draft is far behind: the round runs plain while
  // the draft catches up (postpone), 3 rounds on the target's own threads at half the plain rate. The
  // speculating round follows once the draft is ready, and the catch-up's lost time (1.5 s) counts to
  // that probe's cost with the round's own (10 tokens in 1 s against 30/s: 0.67 s).
  constexpr double budget = SpeculationGovernor::kProbeBudget;
  const int until_probe = SpeculationGovernor::kWarmRounds + 4 * SpeculationGovernor::kProbeEvery - 1;
  SpeculationGovernor g(true);
  EXPECT_EQ(run(g, 16, until_probe, 10, 30), 0);
  SpeculationGovernor::Decision d = g.decide(16);
  ASSERT_TRUE(d.speculate) << "the first probe";
  g.postpone(d);
  for (int i = 0; i < 3; ++i) g.observe_catch_up(15, 1.0);
  d = g.decide(16);
  EXPECT_TRUE(d.speculate) << "the postponed speculation runs once the draft has caught up";
  g.observe(d, 10, 1.0);
  EXPECT_GT(g.rate(16, true), 0.0) << "speculation measured at 16 rows";
  EXPECT_TRUE(g.backing_off(16)) << "it was slower";
  // The next probe waits until (1.5 + 0.67) s / budget of rounds have run since this one began (4 s of
  // it so far): ~104 plain rounds of 1 s, where the count rule alone allows one after 3 x kProbeEvery.
  const int affordable = static_cast<int>((1.5 + 2.0 / 3.0) / budget) - 4;
  ASSERT_GT(affordable, 3 * SpeculationGovernor::kProbeEvery + 10);
  EXPECT_EQ(run(g, 16, affordable - 5, 10, 30), 0) << "the catch-up's cost is budgeted";
  EXPECT_GE(run(g, 16, 20, 10, 30), 1) << "then a probe";
  // Without the catch-up the same probe costs its round alone, and the count rule sets the next.
  SpeculationGovernor h(true);
  run(h, 16, until_probe, 10, 30);
  d = h.decide(16);
  h.observe(d, 10, 1.0);
  EXPECT_GE(run(h, 16, affordable - 5, 10, 30), 1);
}

TEST(SpeculationGovernor, PredictsAForwardsCostFromTheMeasuredOnes) {
  SpeculationGovernor g(true, 2);
  EXPECT_EQ(g.predicted_cost_ratio(16, 48), 0.0) << "nothing measured";
  g.observe_forward(16, 1.0);
  EXPECT_EQ(g.predicted_cost_ratio(16, 48), 0.0) << "nothing measured above the base";
  g.observe_forward(400, 25.0);  // compute-bound: 1/16 s a row
  EXPECT_NEAR(g.predicted_cost_ratio(16, 48), 3.0, 1e-9);
  g.observe_forward(64, 1.2);  // the nearest measurement above 48 rows is the one used
  EXPECT_NEAR(g.predicted_cost_ratio(16, 48), (1.0 + 0.2 * 32.0 / 48.0) / 1.0, 1e-9);
  g.observe_forward(4, 0.5);  // below the base: the largest at or below it stays the anchor
  EXPECT_NEAR(g.predicted_cost_ratio(16, 48), (1.0 + 0.2 * 32.0 / 48.0) / 1.0, 1e-9);
}

TEST(SpeculationGovernor, AColdLargeBatchProbesAtOnceWhereVerificationIsCheap) {
  // a latency-bound target (a GPU): a prefill of 480 rows cost little more than a plain round of 16
  SpeculationGovernor g(true, 2);
  g.observe_forward(480, 0.012);
  g.observe_forward(16, 0.010);
  EXPECT_EQ(run(g, 16, SpeculationGovernor::kWarmRounds, 30, 10), 0);
  EXPECT_EQ(run(g, 16, 20, 30, 10), 20) << "the probe came at once and speculation won";
  // a compute-bound one (a CPU): verifying 3 rows per row costs ~3x; the first probe waits
  SpeculationGovernor h(true, 2);
  h.observe_forward(480, 0.30);
  h.observe_forward(16, 0.010);
  EXPECT_EQ(run(h, 16, SpeculationGovernor::kWarmRounds + 20, 30, 10), 0);
}

TEST(SpeculationGovernor, RequestsAdmittedWhileBackingOffDeferTheDraftsPrefillAndStayExact) {
  // The compute-bound pair of RuntimeBacksOffWhereSpeculationCostsMoreThanItGains: once the first
  // wave's rounds run plain, a second wave's prompts are not sent to the draft at admission; the draft
  // prefills them when a probe next speculates for them, and every output is still the target's.
  auto target = std::make_shared<TimedToy>(testing::target_options(), 0.0005, 0.002);
  auto draft = std::make_shared<TimedToy>(testing::unrelated_draft_options(), 0.0005, 0.0005);
  RuntimeConfig c = testing::config_for(Mode::kSsd, 3);
  c.backup = BackupKind::kAuto;
  const auto prompts = testing::mixed_prompts(16, target->vocab_size());
  RequestParams p;
  p.max_new_tokens = 120;
  Runtime rt(target, draft, c);
  std::vector<int64_t> ids;
  for (size_t i = 0; i < 8; ++i) ids.push_back(rt.submit(prompts[i], p));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (rt.metrics().plain_rounds < 2 * SpeculationGovernor::kWarmRounds && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_GE(rt.metrics().plain_rounds, SpeculationGovernor::kWarmRounds) << "the first wave backed off";
  for (size_t i = 8; i < prompts.size(); ++i) ids.push_back(rt.submit(prompts[i], p));
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_EQ(testing::drain(rt, ids[i]).tokens, testing::greedy_reference(*target, prompts[i], p.max_new_tokens, {}))
        << "request " << i;
  EXPECT_GT(rt.metrics().draft_prefills_deferred, 0);
}

TEST(SpeculationGovernor, ADraftFarBehindCatchesUpInTheBackgroundWhileTheRoundsRunPlain) {
  // A cold batch of 16 starts plain with its draft prefills deferred; a latency-bound target makes the
  // governor probe speculation after its plain warm-up. The rows are then a whole prompt behind at the
  // draft: they are sent to catch up, and the rounds run plain, unobserved, until the draft has. The
  // draft is the target's twin, so a draft KV that caught up right builds trees the target's greedy
  // outcomes hit; the outputs are the target's.
  auto target = std::make_shared<TimedToy>(testing::target_options(), 0.003, 0.0);
  auto draft = std::make_shared<TimedToy>(testing::target_options(), 0.001, 0.0002);
  RuntimeConfig c = testing::config_for(Mode::kSsd, 3);
  c.backup = BackupKind::kAuto;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> p;
    for (int j = 0; j < 40; ++j)  // well past the background catch-up's 16 tokens (target_worker.hpp)
      p.push_back(static_cast<int32_t>((i * 13 + j * 7 + 3) % target->vocab_size()));
    prompts.push_back(p);
  }
  RequestParams p;
  p.max_new_tokens = 48;
  Runtime rt(target, draft, c);
  const auto got = testing::run_all(rt, prompts, std::vector<RequestParams>(prompts.size(), p));
  int64_t lookups = 0, hits = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i].tokens, testing::greedy_reference(*target, prompts[i], p.max_new_tokens, {})) << "request " << i;
    for (size_t j = 0; j < got[i].metrics.lookups_per_position.size(); ++j) {
      lookups += got[i].metrics.lookups_per_position[j];
      hits += got[i].metrics.hits_per_position[j];
    }
  }
  const RuntimeMetrics m = rt.metrics();
  EXPECT_GT(m.draft_prefills_deferred, 0);
  EXPECT_GT(m.draft_catch_up_rows, 0) << "the rows far behind caught up in the background";
  EXPECT_GT(m.catch_up_rounds, 0) << "plain rounds ran meanwhile";
  ASSERT_GT(lookups, 0) << "speculation resumed after the catch-up";
  EXPECT_GE(hits, lookups * 9 / 10) << "the trees after the catch-up were the target's";
}

TEST(SpeculationGovernor, FollowsAChangeOfRates) {
  SpeculationGovernor g(true);
  run(g, 4, 200, 10, 30);  // plain wins
  const int n = 10 * SpeculationGovernor::kProbeEvery;
  // now speculation pays (e.g. the batch's prompts became predictable): the probes find it
  run(g, 4, n, 60, 30);
  EXPECT_GT(run(g, 4, n, 60, 30), n * 4 / 5);
}

TEST(SpeculationGovernor, RuntimeBacksOffWhereSpeculationCostsMoreThanItGains) {
  // A compute-bound target (the cost is per row) with a poor draft: K+1 rows per sequence buy little.
  for (Mode mode : {Mode::kSd, Mode::kSsd}) {
    const RuntimeMetrics m = run_timed_batch(mode, BackupKind::kAuto, 0.0005, 0.002, testing::unrelated_draft_options());
    EXPECT_GT(m.plain_rounds, m.rounds / 2) << mode_name(mode) << ": rounds " << m.rounds;
    // backup "jit" keeps every round speculating (the same tokens for a seed in any batch)
    const RuntimeMetrics jit = run_timed_batch(mode, BackupKind::kJit, 0.0005, 0.002, testing::unrelated_draft_options());
    EXPECT_EQ(jit.plain_rounds, 0) << mode_name(mode);
  }
}

TEST(SpeculationGovernor, RuntimeKeepsSpeculatingWhereItPays) {
  // A latency-bound target (20 ms a call whatever its rows) and a cheap draft identical to it: every
  // draft is accepted, so a speculating round commits 4 tokens per row for about the price of one.
  const RuntimeMetrics m = run_timed_batch(Mode::kSd, BackupKind::kAuto, 0.02, 0.0, testing::target_options(),
                                           0.0002, 0.0);
  EXPECT_LT(m.plain_rounds, m.rounds / 3) << "rounds " << m.rounds;
}

}  // namespace
}  // namespace saguaro
