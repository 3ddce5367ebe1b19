// Greedy: AR == SD == SSD == the plain reference, token for token, for several batch sizes,
// speculation lengths, fan-outs, backups, cache policies and draft qualities. Sampled: the same
// seed gives the same tokens in SD and SSD (C = 1) and across batch sizes.
#include <gtest/gtest.h>

#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

std::vector<std::vector<int32_t>> expected_greedy(const ToyModel& target, const std::vector<std::vector<int32_t>>& prompts,
                                                  int64_t max_new) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& p : prompts) out.push_back(greedy_reference(target, p, max_new, {}));
  return out;
}

void expect_greedy_equal(RuntimeConfig config, const ToyOptions& draft_options, size_t batch, int64_t max_new = 24,
                         RuntimeMetrics* metrics_out = nullptr) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(draft_options);
  auto prompts = mixed_prompts(batch, target->vocab_size());
  RequestParams params;
  params.max_new_tokens = max_new;
  const auto expected = expected_greedy(*target, prompts, max_new);
  {
    Runtime rt(target, draft, config);
    auto got = run_all(rt, prompts, std::vector<RequestParams>(batch, params));
    for (size_t i = 0; i < batch; ++i) {
      EXPECT_EQ(got[i].tokens, expected[i]) << "request " << i << " mode " << mode_name(config.mode);
      EXPECT_EQ(got[i].reason, FinishReason::kLength);
      EXPECT_EQ(got[i].metrics.generated_tokens, max_new);
    }
    if (metrics_out) *metrics_out = rt.metrics();
  }
  EXPECT_EQ(target->live_sequences(), 0) << "target sequences not released";
  EXPECT_EQ(draft->live_sequences(), 0) << "draft sequences not released";
}

class GreedyEquality : public ::testing::TestWithParam<size_t> {};

TEST_P(GreedyEquality, ArMatchesReference) { expect_greedy_equal(config_for(Mode::kAr), perturbed_draft_options(), GetParam()); }

TEST_P(GreedyEquality, SdMatchesReferenceForSeveralK) {
  for (int32_t k : {1, 3, 4}) expect_greedy_equal(config_for(Mode::kSd, k), perturbed_draft_options(), GetParam());
}

TEST_P(GreedyEquality, SsdMatchesReferenceForFanoutsAndBackups) {
  for (BackupKind backup : {BackupKind::kJit, BackupKind::kFast, BackupKind::kAuto}) {
    RuntimeConfig c = config_for(Mode::kSsd, 3);
    c.backup = backup;
    c.fanout.kind = FanoutKind::kManual;
    c.fanout.manual = {1, 1, 1, 2};
    expect_greedy_equal(c, perturbed_draft_options(), GetParam());
    c.fanout.kind = FanoutKind::kGeometric;
    c.fanout.budget = 6;
    expect_greedy_equal(c, perturbed_draft_options(), GetParam());
    c.fanout.kind = FanoutKind::kUniform;
    c.fanout.budget = 10;
    c.k = 4;
    expect_greedy_equal(c, perturbed_draft_options(), GetParam());
  }
}

TEST_P(GreedyEquality, SsdMatchesReferenceUnderEveryCachePolicy) {
  for (CachePolicy policy : {CachePolicy::kWait, CachePolicy::kPartial, CachePolicy::kMiss}) {
    RuntimeConfig c = config_for(Mode::kSsd, 3);
    c.cache_policy = policy;
    c.backup = BackupKind::kJit;
    expect_greedy_equal(c, perturbed_draft_options(), GetParam());
  }
}

INSTANTIATE_TEST_SUITE_P(Batch, GreedyEquality, ::testing::Values(1, 4));

TEST(RuntimeSsd, IdenticalDraftAlwaysHitsAndAcceptsEverything) {
  RuntimeConfig c = config_for(Mode::kSsd, 4);
  c.backup = BackupKind::kJit;
  RuntimeMetrics m;
  ToyOptions same = target_options();
  expect_greedy_equal(c, same, 4, 40, &m);
  const auto& t = m.totals;
  int64_t lookups = 0, hits = 0;
  for (size_t j = 0; j < t.lookups_per_position.size(); ++j) {
    lookups += t.lookups_per_position[j];
    hits += t.hits_per_position[j];
  }
  ASSERT_GT(lookups, 0);
  EXPECT_EQ(hits, lookups) << "a draft equal to the target predicts every (k, t)";
  EXPECT_EQ(t.accepted_per_position, t.proposed_per_position);
  EXPECT_EQ(t.backups_jit, 4) << "only each request's first speculation is a backup";
}

TEST(RuntimeSsd, UnrelatedDraftMostlyMissesAndStillMatches) {
  for (BackupKind backup : {BackupKind::kJit, BackupKind::kFast}) {
    RuntimeConfig c = config_for(Mode::kSsd, 3);
    c.backup = backup;
    c.fanout.kind = FanoutKind::kManual;
    c.fanout.manual = {1, 1, 1, 1};
    RuntimeMetrics m;
    expect_greedy_equal(c, unrelated_draft_options(), 4, 30, &m);
    int64_t lookups = 0, hits = 0;
    for (size_t j = 0; j < m.totals.lookups_per_position.size(); ++j) {
      lookups += m.totals.lookups_per_position[j];
      hits += m.totals.hits_per_position[j];
    }
    EXPECT_LT(hits * 2, lookups) << "an unrelated draft should miss most of the time";
    if (backup == BackupKind::kFast) EXPECT_GT(m.totals.backups_fast, 0);
    if (backup == BackupKind::kJit) EXPECT_GT(m.totals.backups_jit, 4);
  }
}

TEST(RuntimeSsd, StopsExactlyAtSmallMaxNewTokens) {
  for (int64_t max_new : {1, 2, 3, 5}) {
    RuntimeConfig c = config_for(Mode::kSsd, 4);
    c.backup = BackupKind::kJit;
    expect_greedy_equal(c, target_options(), 3, max_new);
    expect_greedy_equal(config_for(Mode::kSd, 4), target_options(), 3, max_new);
  }
}

TEST(RuntimeGreedy, StopTokenEndsTheRequestAndIsIncluded) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto prompt = mixed_prompts(1, target->vocab_size())[0];
  auto free_run = greedy_reference(*target, prompt, 20, {});
  const int32_t stop = free_run[5];
  auto expected = greedy_reference(*target, prompt, 20, {stop});
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
    Runtime rt(target, draft, config_for(mode, 3));
    RequestParams p;
    p.max_new_tokens = 20;
    p.stop_token_ids = {stop};
    auto got = run_all(rt, {prompt}, {p});
    EXPECT_EQ(got[0].tokens, expected) << mode_name(mode);
    EXPECT_EQ(got[0].reason, FinishReason::kStop);
  }
}

// ---- sampled ----

std::vector<std::vector<int32_t>> sampled_run(Mode mode, const std::vector<std::vector<int32_t>>& prompts,
                                              const std::vector<RequestParams>& params, BackupKind backup = BackupKind::kJit,
                                              float c = 1.f) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  RuntimeConfig config = config_for(mode, 3);
  config.backup = backup;
  config.saguaro_c = c;
  Runtime rt(target, draft, config);
  auto got = run_all(rt, prompts, params);
  std::vector<std::vector<int32_t>> out;
  for (auto& f : got) out.push_back(f.tokens);
  return out;
}

std::vector<RequestParams> sampled_params(size_t n) {
  std::vector<RequestParams> ps;
  for (size_t i = 0; i < n; ++i) {
    RequestParams p;
    p.temperature = 0.9f;
    p.top_k = i % 2 ? 8 : 0;
    p.top_p = i % 3 == 2 ? 0.9f : 1.f;
    p.max_new_tokens = 30;
    p.seed = 1000 + i;
    p.stream = i;
    ps.push_back(p);
  }
  return ps;
}

TEST(RuntimeSampled, SsdEqualsSdWithTheSameSeedAtC1) {
  auto prompts = mixed_prompts(4, 24);
  auto params = sampled_params(4);
  auto sd = sampled_run(Mode::kSd, prompts, params);
  auto ssd = sampled_run(Mode::kSsd, prompts, params);
  EXPECT_EQ(sd, ssd);
  // and the tokens are really sampled: not the greedy continuation
  auto target = ToyModel(target_options());
  int differing = 0;
  for (size_t i = 0; i < prompts.size(); ++i) differing += sd[i] != greedy_reference(target, prompts[i], 30, {});
  EXPECT_GT(differing, 0);
}

TEST(RuntimeSampled, SameSeedSameTokensAcrossBatchSizesAndRuns) {
  auto prompts = mixed_prompts(4, 24);
  auto params = sampled_params(4);
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    auto batch = sampled_run(mode, prompts, params);
    EXPECT_EQ(batch, sampled_run(mode, prompts, params)) << mode_name(mode);
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(sampled_run(mode, {prompts[i]}, {params[i]})[0], batch[i]) << mode_name(mode) << " request " << i;
  }
}

TEST(RuntimeSampled, DifferentSeedsGiveDifferentTokens) {
  auto prompts = mixed_prompts(1, 24);
  auto params = sampled_params(1);
  auto a = sampled_run(Mode::kSsd, prompts, params);
  params[0].seed += 1;
  auto b = sampled_run(Mode::kSsd, prompts, params);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace saguaro::testing

namespace saguaro::testing {
namespace {

// Near the context limit the tree is skipped and budgets shrink: a stale speculation must never
// be verified again (it would change the sampled tokens relative to SD).
TEST(RuntimeSampled, SsdEqualsSdNearTheContextLimit) {
  auto run = [](Mode mode) {
    RuntimeConfig c = config_for(mode, 4);
    c.backup = BackupKind::kJit;  // a fast backup proposes other tokens: same distribution, other draws
    ToyPair pair = toy_pair(22);
    Runtime rt(pair.target, pair.draft, c);
    auto prompts = mixed_prompts(4, 24);
    std::vector<RequestParams> ps(4);
    for (size_t i = 0; i < ps.size(); ++i) {
      ps[i].temperature = 1.f;
      ps[i].max_new_tokens = 100;
      ps[i].seed = 7 + i;
    }
    std::vector<std::vector<int32_t>> out;
    for (auto& f : run_all(rt, prompts, ps)) out.push_back(f.tokens);
    return out;
  };
  EXPECT_EQ(run(Mode::kSd), run(Mode::kSsd));
}

}  // namespace
}  // namespace saguaro::testing
