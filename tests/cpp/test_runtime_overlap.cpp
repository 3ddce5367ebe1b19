// The point of SSD: the draft's tree work runs while the target verifies. The instrumented target
// blocks inside each verification forward until the draft has run a tree step (bounded wait), so
// a runtime that serialised the two would show no overlapping verification at all. Likewise for
// the prompts' prefills.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

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

// What the threads hook set, and whether the draft is inside a model call, seen from the target's calls.
struct ThreadsLog {
  std::atomic<int32_t> threads{1};
  std::atomic<int> draft_in_call{0};
  std::atomic<int> lent_forwards{0}, own_forwards{0}, lent_while_draft_busy{0};
  std::atomic<int> lent_prefills{0}, own_prefills{0};
  std::atomic<int> lent_cpus{0};  // the most CPUs the target worker could run on in a lent forward
};

class ThreadsWatchingModel : public ToyModel {
 public:
  ThreadsWatchingModel(ToyOptions o, std::shared_ptr<ThreadsLog> log, bool is_target)
      : ToyModel(std::move(o)), log_(std::move(log)), target_(is_target) {}

 protected:
  void before_call(const char* what, const std::vector<int64_t>& ids) override {
    ToyModel::before_call(what, ids);
    if (!target_) {
      ++log_->draft_in_call;
      // long enough that a target forward lent the threads while the draft works would overlap it
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return;
    }
    const std::string w(what);
    if (w != "extend" && w != "prefill") return;
    // long enough for a draft given work just before (a tree) to be inside a model call at the end
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (log_->threads.load() > 1) {
      ++log_->lent_forwards;
      if (w == "prefill") ++log_->lent_prefills;
      cpu_set_t mask;
      CPU_ZERO(&mask);
      if (sched_getaffinity(0, sizeof(mask), &mask) == 0 && CPU_COUNT(&mask) > log_->lent_cpus.load())
        log_->lent_cpus = CPU_COUNT(&mask);
      lent_ = true;
      if (log_->draft_in_call.load() > 0) ++log_->lent_while_draft_busy;
    } else {
      ++log_->own_forwards;
      if (w == "prefill") ++log_->own_prefills;
    }
  }
  void after_call(const char* what, const std::vector<int64_t>& ids, std::vector<float>* logits) override {
    ToyModel::after_call(what, ids, logits);
    if (!target_) {
      --log_->draft_in_call;
    } else if (lent_) {  // nothing was sent to the draft meanwhile: it is still idle
      if (log_->draft_in_call.load() > 0) ++log_->lent_while_draft_busy;
      lent_ = false;
    }
  }

 private:
  std::shared_ptr<ThreadsLog> log_;
  bool target_;
  bool lent_ = false;
};

// ssd with one thread per worker and the threads hook writing to `log`; pinned where cores are given.
RuntimeConfig lending_config(const std::shared_ptr<ThreadsLog>& log, std::vector<int> target_cores,
                             std::vector<int> draft_cores) {
  RuntimeConfig c = config_for(Mode::kSsd, 3);
  c.target_threads = 1;
  c.draft_threads = 1;
  c.target_cores = std::move(target_cores);
  c.draft_cores = std::move(draft_cores);
  c.set_target_threads = [log](int32_t n) { log->threads = n; };
  return c;
}

// ssd: a cold batch of 8 runs plain rounds with the draft's prefills deferred, so the draft has no
// work and the target's forwards run on its threads too; a request alone afterwards speculates, and
// its forwards give them back (the draft builds trees then). Never lent while the draft is inside a
// model call, never with both workers pinned to one core, and the output is the target's greedy output
// either way.
TEST(RuntimeOverlap, TargetBorrowsTheDraftsThreadsOnlyWhileTheDraftHasNoWork) {
  for (const bool pinned : {false, true}) {
    auto log = std::make_shared<ThreadsLog>();
    auto target = std::make_shared<ThreadsWatchingModel>(target_options(), log, true);
    auto draft = std::make_shared<ThreadsWatchingModel>(perturbed_draft_options(), log, false);
    Runtime rt(target, draft, lending_config(log, pinned ? std::vector<int>{0} : std::vector<int>{},
                                             pinned ? std::vector<int>{0} : std::vector<int>{}));
    const auto prompts = mixed_prompts(9, 24);
    RequestParams p;
    p.max_new_tokens = 24;
    const std::vector<std::vector<int32_t>> burst(prompts.begin(), prompts.begin() + 8), alone{prompts[8]};
    const auto got = run_all(rt, burst, std::vector<RequestParams>(burst.size(), p));
    const auto got_alone = run_all(rt, alone, {p});
    for (size_t i = 0; i < burst.size(); ++i)
      EXPECT_EQ(got[i].tokens, greedy_reference(*target, burst[i], p.max_new_tokens, {})) << "prompt " << i;
    EXPECT_EQ(got_alone[0].tokens, greedy_reference(*target, alone[0], p.max_new_tokens, {}));
    const RuntimeMetrics m = rt.metrics();
    EXPECT_EQ(log->lent_while_draft_busy.load(), 0);
    EXPECT_GT(log->own_forwards.load(), 0);
    if (pinned) {
      EXPECT_EQ(log->lent_forwards.load(), 0);
      EXPECT_EQ(m.forwards_on_draft_threads, 0);
    } else {
      EXPECT_GT(m.plain_rounds, 0);
      EXPECT_GT(log->lent_forwards.load(), 0);
      EXPECT_EQ(m.forwards_on_draft_threads, log->lent_forwards.load());
    }
  }
}

// ssd: a prompt that is all the work there is prefills on the draft's threads too, and the draft's
// prefill waits (deferred) and then catches up in the background: the time to the first token is a
// prefill on both workers' threads, not on the target's alone. Pinned workers on two cores likewise:
// the lent prefill runs with the target worker's pin widened to the draft's core. Output unchanged.
TEST(RuntimeOverlap, APromptAlonePrefillsOnTheDraftsThreadsToo) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  std::vector<int> cores;
  for (int c = 0; c < CPU_SETSIZE && cores.size() < 2; ++c)
    if (CPU_ISSET(c, &allowed)) cores.push_back(c);
  for (const bool pinned : {false, true}) {
    if (pinned && cores.size() < 2) GTEST_SKIP() << "pinning to two cores needs two usable cores";
    auto log = std::make_shared<ThreadsLog>();
    auto target = std::make_shared<ThreadsWatchingModel>(target_options(), log, true);
    auto draft = std::make_shared<ThreadsWatchingModel>(perturbed_draft_options(), log, false);
    Runtime rt(target, draft, lending_config(log, pinned ? std::vector<int>{cores[0]} : std::vector<int>{},
                                             pinned ? std::vector<int>{cores[1]} : std::vector<int>{}));
    RequestParams p;
    p.max_new_tokens = 24;
    const auto prompt = mixed_prompts(1, 24)[0];
    std::vector<int32_t> long_prompt;
    while (long_prompt.size() < 64)  // far enough behind (> 16 tokens) for the draft to catch up first
      long_prompt.insert(long_prompt.end(), prompt.begin(), prompt.end());
    const auto got = run_all(rt, {long_prompt}, {p});
    EXPECT_EQ(got[0].tokens, greedy_reference(*target, long_prompt, p.max_new_tokens, {})) << "pinned " << pinned;
    const RuntimeMetrics m = rt.metrics();
    EXPECT_EQ(log->lent_prefills.load(), 1) << "pinned " << pinned;
    EXPECT_EQ(log->own_prefills.load(), 0) << "pinned " << pinned;
    EXPECT_EQ(log->lent_while_draft_busy.load(), 0) << "pinned " << pinned;
    EXPECT_EQ(m.draft_prefills_deferred, 1) << "pinned " << pinned;
    EXPECT_EQ(m.draft_catch_up_rows, 1) << "pinned " << pinned;
    EXPECT_GT(m.catch_up_rounds, 0) << "pinned " << pinned;
    if (pinned) EXPECT_EQ(log->lent_cpus.load(), 2) << "the lent forwards run on both workers' cores";
  }
}

// A target whose prefill is slow beside its decode steps: a prompt read at 320 tokens/s, decode steps
// of ~2 ms. With the target's prefill rate as the draft's (none measured yet), a 64-token catch-up
// lasts as long as ~100 plain rounds.
class SlowPrefillTarget : public ThreadsWatchingModel {
 public:
  using ThreadsWatchingModel::ThreadsWatchingModel;
  Logits prefill(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& prompts) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return ThreadsWatchingModel::prefill(ids, prompts);
  }
};

// ssd, a lone request whose prompt the draft has not read (deferred): when the draft could not catch
// up before the request ends at its plain pace, nothing is sent to the draft and every round runs
// plain on the draft's threads too; with tokens enough left, the draft catches up as before. The
// first round is plain either way (it measures the plain pace). Output: the target's.
TEST(RuntimeOverlap, ALoneRequestSkipsACatchUpThatCannotPay) {
  for (const int64_t max_new : {8, 400}) {
    auto log = std::make_shared<ThreadsLog>();
    auto target = std::make_shared<SlowPrefillTarget>(target_options(), log, true);
    auto draft = std::make_shared<ThreadsWatchingModel>(perturbed_draft_options(), log, false);
    Runtime rt(target, draft, lending_config(log, {}, {}));
    RequestParams p;
    p.max_new_tokens = max_new;
    const auto prompt = mixed_prompts(1, 24)[0];
    std::vector<int32_t> long_prompt;
    while (long_prompt.size() < 64) long_prompt.insert(long_prompt.end(), prompt.begin(), prompt.end());
    long_prompt.resize(64);
    EXPECT_EQ(run_all(rt, {long_prompt}, {p})[0].tokens, greedy_reference(*target, long_prompt, max_new, {}));
    const RuntimeMetrics m = rt.metrics();
    EXPECT_EQ(m.draft_prefills_deferred, 1);
    if (max_new == 8) {
      EXPECT_EQ(m.draft_catch_up_rows, 0);
      EXPECT_EQ(m.rounds_without_draft, max_new - 1) << "one token from the prefill, then plain rounds";
      EXPECT_EQ(log->own_forwards.load(), 0) << "every forward on the draft's threads too";
    } else {
      EXPECT_EQ(m.draft_catch_up_rows, 1);
      EXPECT_EQ(m.rounds_without_draft, 1) << "the round that measured the plain pace";
      EXPECT_GT(m.catch_up_rounds, 0);
    }
  }
}

}  // namespace
}  // namespace saguaro::testing
