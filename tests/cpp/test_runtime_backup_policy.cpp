// Which backup covers a miss: jit below the critical batch size, fast from it on.
#include <gtest/gtest.h>

#include "saguaro/backup_policy.hpp"
#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

TEST(BackupPolicy, FixedKindsAndFixedCriticalBatch) {
  EXPECT_EQ(BackupPolicy(BackupKind::kJit, 0, 4).choose(1000), BackupKind::kJit);
  EXPECT_EQ(BackupPolicy(BackupKind::kFast, 0, 4).choose(1), BackupKind::kFast);
  BackupPolicy fixed(BackupKind::kAuto, 3, 4);
  EXPECT_EQ(fixed.critical_batch(), 3);
  EXPECT_EQ(fixed.choose(2), BackupKind::kJit);
  EXPECT_EQ(fixed.choose(3), BackupKind::kFast);
}

TEST(BackupPolicy, CriticalBatchFollowsMeasuredHitRateAndLatencies) {
  // A cheap jit backup that is much better than the fast one: jit for all practical batch sizes.
  BackupPolicy cheap(BackupKind::kAuto, 0, 4);
  cheap.observe_verify(0.100);
  cheap.observe_jit(0.001);
  cheap.observe_lookup(true);
  cheap.observe_lookup(false);
  for (int i = 0; i < 40; ++i) cheap.observe_lookup(i % 2 == 0);
  cheap.observe_committed(SpeculationSource::kJitBackup, 4);
  cheap.observe_committed(SpeculationSource::kFastBackup, 1);
  cheap.observe_committed(SpeculationSource::kCache, 4);
  EXPECT_GT(cheap.critical_batch(), 64);
  EXPECT_EQ(cheap.choose(8), BackupKind::kJit);

  // A jit backup as slow as a verification with a 70% hit rate: the whole batch waits for it as
  // soon as one row misses, so the fast backup wins from a small batch size on.
  BackupPolicy slow(BackupKind::kAuto, 0, 4);
  slow.observe_verify(0.100);
  slow.observe_jit(0.100);
  slow.observe_lookup(true);
  for (int i = 0; i < 30; ++i) slow.observe_lookup(i % 10 < 7);
  slow.observe_committed(SpeculationSource::kJitBackup, 3);
  slow.observe_committed(SpeculationSource::kFastBackup, 2);
  slow.observe_committed(SpeculationSource::kCache, 4);
  const int64_t b = slow.critical_batch();
  EXPECT_GE(b, 1);
  EXPECT_LE(b, 4);
  EXPECT_EQ(slow.choose(b), BackupKind::kFast);
  if (b > 1) EXPECT_EQ(slow.choose(b - 1), BackupKind::kJit);
}

TEST(BackupPolicy, RuntimeUsesTheCriticalBatch) {
  for (int64_t batch : {1, 4}) {
    auto target = std::make_shared<ToyModel>(target_options());
    auto draft = std::make_shared<ToyModel>(unrelated_draft_options());  // misses: backups every round
    RuntimeConfig c = config_for(Mode::kSsd, 3);
    c.backup = BackupKind::kAuto;
    c.backup_critical_batch = 2;
    Runtime rt(target, draft, c);
    RequestParams p;
    p.max_new_tokens = 20;
    auto prompts = mixed_prompts(batch, target->vocab_size());
    auto got = run_all(rt, prompts, std::vector<RequestParams>(batch, p));
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].tokens, greedy_reference(*target, prompts[i], 20, {}));
    const RuntimeMetrics m = rt.metrics();
    if (batch == 1) {
      EXPECT_EQ(m.totals.backups_fast, 0);
      EXPECT_GT(m.totals.backups_jit, 1);
    } else {
      EXPECT_GT(m.totals.backups_fast, 0);
    }
  }
}

}  // namespace
}  // namespace saguaro::testing
