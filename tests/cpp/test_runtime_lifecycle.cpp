// Requests joining between rounds, cancel, close with requests in flight, releases, bad input.
#include <gtest/gtest.h>

#include <sched.h>

#include <chrono>
#include <thread>

#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

TEST(RuntimeLifecycle, RequestsJoinBetweenRoundsAndStillMatch) {
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    auto [target, draft] = toy_pair(1 << 23);
    Runtime rt(target, draft, config_for(mode, 3));
    auto prompts = mixed_prompts(3, target->vocab_size());
    RequestParams p;
    p.max_new_tokens = 40;
    RequestParams endless = p;
    endless.max_new_tokens = 1 << 22;
    const int64_t first = rt.submit(prompts[0], endless);
    // wait until the first request is running, then add two more
    RequestUpdate u = rt.poll(first, 30.0);
    ASSERT_FALSE(u.finished);
    const int64_t second = rt.submit(prompts[1], p);
    const int64_t third = rt.submit(prompts[2], p);
    EXPECT_EQ(drain(rt, second).tokens, greedy_reference(*target, prompts[1], 40, {})) << mode_name(mode);
    EXPECT_EQ(drain(rt, third).tokens, greedy_reference(*target, prompts[2], 40, {})) << mode_name(mode);
    rt.cancel(first);
    Finished rest0 = drain(rt, first);
    std::vector<int32_t> tokens0 = u.tokens;
    tokens0.insert(tokens0.end(), rest0.tokens.begin(), rest0.tokens.end());
    EXPECT_EQ(rest0.reason, FinishReason::kCancelled);
    EXPECT_EQ(tokens0, greedy_reference(*target, prompts[0], static_cast<int64_t>(tokens0.size()), {}));
  }
}

TEST(RuntimeLifecycle, CancelFinishesTheRequestAndLeavesOthersRunning) {
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    auto [target, draft] = toy_pair(1 << 20);
    Runtime rt(target, draft, config_for(mode, 3));
    RequestParams endless;
    endless.max_new_tokens = 1 << 19;
    RequestParams short_one;
    short_one.max_new_tokens = 10;
    auto prompts = mixed_prompts(2, target->vocab_size());
    const int64_t a = rt.submit(prompts[0], endless);
    const int64_t b = rt.submit(prompts[1], short_one);
    rt.poll(a, 30.0);  // it is running
    rt.cancel(a);
    Finished fa = drain(rt, a);
    EXPECT_EQ(fa.reason, FinishReason::kCancelled) << mode_name(mode);
    Finished fb = drain(rt, b);
    EXPECT_EQ(fb.reason, FinishReason::kLength);
    EXPECT_EQ(fb.tokens, greedy_reference(*target, prompts[1], 10, {}));
    EXPECT_THROW(rt.poll(a, 0.0), std::invalid_argument) << "a fully polled request is forgotten";
    rt.cancel(a);      // unknown / finished ids are ignored
    rt.cancel(12345);
    rt.close();
    EXPECT_EQ(target->live_sequences(), 0);
    EXPECT_EQ(draft->live_sequences(), 0);
  }
}

TEST(RuntimeLifecycle, CancelRightAfterSubmitIsNeverLost) {
  // The worker takes submissions and cancels between rounds; a cancel sent right after its submit
  // must land in the same take or a later one, never before the submission is admitted (a lost
  // cancel runs the request to its length). Many tries, so an unlucky interleaving shows up.
  for (Mode mode : {Mode::kAr, Mode::kSsd}) {
    auto [target, draft] = toy_pair(1 << 20);
    Runtime rt(target, draft, config_for(mode, 3));
    RequestParams endless;
    // A lost cancel ends in "length" (bounded), not a hang; long enough that the test thread being
    // descheduled between submit and cancel cannot let a toy request finish (3000 tokens could).
    endless.max_new_tokens = 200000;
    auto prompts = mixed_prompts(1, target->vocab_size());
    for (int i = 0; i < 200; ++i) {
      const int64_t id = rt.submit(prompts[0], endless);
      rt.cancel(id);
      Finished f = drain(rt, id);
      ASSERT_EQ(f.reason, FinishReason::kCancelled) << mode_name(mode) << ", try " << i << ", " << f.tokens.size() << " tokens";
    }
    rt.close();
  }
}

// The target releases finished sequences in the draft lazily (with its next message to the draft),
// and all of them as soon as it has nothing to run: an idle runtime holds no draft memory.
TEST(RuntimeLifecycle, AnIdleRuntimeHasReleasedFinishedSequencesInTheDraft) {
  for (Mode mode : {Mode::kSd, Mode::kSsd}) {
    auto [target, draft] = toy_pair(1 << 20);
    Runtime rt(target, draft, config_for(mode, 3));
    RequestParams p;
    p.max_new_tokens = 12;
    std::vector<int64_t> ids;
    for (auto& prompt : mixed_prompts(3, target->vocab_size())) ids.push_back(rt.submit(prompt, p));
    for (int64_t id : ids) EXPECT_EQ(drain(rt, id).reason, FinishReason::kLength) << mode_name(mode);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (draft->live_sequences() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(draft->live_sequences(), 0) << mode_name(mode) << ": released only at close";
    EXPECT_EQ(target->live_sequences(), 0) << mode_name(mode);
  }
}

TEST(RuntimeLifecycle, CloseWithRequestsInFlightCancelsThemAndJoins) {
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    auto [target, draft] = toy_pair(1 << 20);
    Runtime rt(target, draft, config_for(mode, 3));
    RequestParams endless;
    endless.max_new_tokens = 1 << 19;
    std::vector<int64_t> ids;
    for (auto& p : mixed_prompts(3, target->vocab_size())) ids.push_back(rt.submit(p, endless));
    rt.poll(ids[0], 30.0);
    rt.close();
    rt.close();  // idempotent
    for (int64_t id : ids) EXPECT_EQ(drain(rt, id).reason, FinishReason::kCancelled) << mode_name(mode);
    EXPECT_THROW(rt.submit({1, 2}, endless), std::runtime_error);
    EXPECT_EQ(target->live_sequences(), 0);
    EXPECT_EQ(draft->live_sequences(), 0);
  }
}

TEST(RuntimeLifecycle, ConcurrentSubmittersAndPollers) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  Runtime rt(target, draft, config_for(Mode::kSsd, 3));
  auto prompts = mixed_prompts(8, target->vocab_size());
  std::vector<std::thread> threads;
  std::vector<std::vector<int32_t>> got(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      RequestParams p;
      p.max_new_tokens = 15 + static_cast<int64_t>(i);
      got[i] = drain(rt, rt.submit(prompts[i], p)).tokens;
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(got[i], greedy_reference(*target, prompts[i], 15 + static_cast<int64_t>(i), {}));
}

TEST(RuntimeLifecycle, BadInputIsRejectedWithSpecificErrors) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  Runtime rt(target, draft, config_for(Mode::kSsd, 3));
  RequestParams p;
  EXPECT_THROW(rt.submit({}, p), std::invalid_argument);
  EXPECT_THROW(rt.submit({1, 999}, p), std::invalid_argument);
  EXPECT_THROW(rt.submit({1, -1}, p), std::invalid_argument);
  RequestParams bad = p;
  bad.top_p = 0.f;
  EXPECT_THROW(rt.submit({1}, bad), std::invalid_argument);
  bad = p;
  bad.max_new_tokens = 0;
  EXPECT_THROW(rt.submit({1}, bad), std::invalid_argument);
  bad = p;
  bad.temperature = -1.f;
  EXPECT_THROW(rt.submit({1}, bad), std::invalid_argument);
  EXPECT_THROW(rt.poll(777, 0.0), std::invalid_argument);
  EXPECT_THROW(rt.poll(1, -1.0), std::invalid_argument);

  RuntimeConfig c = config_for(Mode::kSsd, 3);
  c.fanout.kind = FanoutKind::kManual;
  c.fanout.manual = {1, 2};  // needs K + 1 = 4 values
  EXPECT_THROW(Runtime(target, draft, c), std::invalid_argument);
  c = config_for(Mode::kSsd, 0);
  EXPECT_THROW(Runtime(target, draft, c), std::invalid_argument);
  c = config_for(Mode::kSsd, 3);
  c.saguaro_c = 1.5f;
  EXPECT_THROW(Runtime(target, draft, c), std::invalid_argument);
  EXPECT_THROW(Runtime(target, nullptr, config_for(Mode::kSd, 3)), std::invalid_argument);
  c = config_for(Mode::kSsd, 3);
  c.draft_cores = {100000};
  EXPECT_THROW(Runtime(target, draft, c), std::invalid_argument);
  ToyOptions other = target_options();
  other.vocab = 30;
  EXPECT_THROW(Runtime(target, std::make_shared<ToyModel>(other), config_for(Mode::kSd, 3)), std::invalid_argument);
  EXPECT_EQ(parse_mode("ssd"), Mode::kSsd);
  EXPECT_THROW(parse_mode("fast"), std::invalid_argument);
  EXPECT_THROW(parse_backup("slow"), std::invalid_argument);
  EXPECT_THROW(parse_cache_policy("maybe"), std::invalid_argument);
}

TEST(RuntimeLifecycle, PinnedWorkersStillMatch) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  RuntimeConfig c = config_for(Mode::kSsd, 3);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  int core = 0;
  while (!CPU_ISSET(core, &allowed)) ++core;
  c.target_cores = {core};
  c.draft_cores = {core};  // both on one core still works
  Runtime rt(target, draft, c);
  RequestParams p;
  p.max_new_tokens = 12;
  auto prompt = mixed_prompts(3, target->vocab_size())[2];
  EXPECT_EQ(run_all(rt, {prompt}, {p})[0].tokens, greedy_reference(*target, prompt, 12, {}));
}

TEST(RuntimeLifecycle, ArNeedsNoDraft) {
  auto target = std::make_shared<ToyModel>(target_options());
  Runtime rt(target, nullptr, config_for(Mode::kAr));
  RequestParams p;
  p.max_new_tokens = 12;
  auto prompt = mixed_prompts(2, target->vocab_size())[1];
  EXPECT_EQ(run_all(rt, {prompt}, {p})[0].tokens, greedy_reference(*target, prompt, 12, {}));
}

TEST(RuntimeLifecycle, GenerationStopsAtTheContextLimit) {
  auto [target, draft] = toy_pair(20);
  for (Mode mode : {Mode::kAr, Mode::kSd, Mode::kSsd}) {
    Runtime rt(target, draft, config_for(mode, 4));
    RequestParams p;
    p.max_new_tokens = 100;
    std::vector<int32_t> prompt{1, 2, 3, 4, 5};
    Finished f = run_all(rt, {prompt}, {p})[0];
    EXPECT_EQ(f.reason, FinishReason::kLength) << mode_name(mode);
    EXPECT_EQ(static_cast<int64_t>(prompt.size() + f.tokens.size()), target->max_context());
    EXPECT_EQ(f.tokens, greedy_reference(*target, prompt, target->max_context() - 5, {}));
  }
}

// Engines over one pair of loaded models (the benchmark runs AR, SD and SSD engines on the same
// weights) share the models' sequence-id space: ids must be unique in the process. With one counter
// per runtime both runtimes named their first request 1 in the shared models (and one runtime's
// asynchronous draft release freed the other's live sequence).
TEST(RuntimeLifecycle, RuntimesSharingModelsNeverShareSequenceIds) {
  auto [target, draft] = toy_pair(1 << 20);
  auto prompts = mixed_prompts(4, target->vocab_size());
  RequestParams p;
  p.max_new_tokens = 30;
  {
    Runtime sd(target, draft, config_for(Mode::kSd, 3));
    Runtime ssd(target, draft, config_for(Mode::kSsd, 3));
    for (int i = 0; i < 2; ++i) {  // both running at once, then one after the other as the benchmark does
      const int64_t a = sd.submit(prompts[2 * i], p);
      const int64_t b = ssd.submit(prompts[2 * i + 1], p);
      EXPECT_NE(a, b);
      Finished fa = drain(sd, a), fb = drain(ssd, b);
      EXPECT_EQ(fa.reason, FinishReason::kLength) << fa.error;
      EXPECT_EQ(fb.reason, FinishReason::kLength) << fb.error;
      EXPECT_TRUE(fa.messages.empty() && fb.messages.empty()) << "a draft failure made a request fall back";
      EXPECT_EQ(fa.tokens, greedy_reference(*target, prompts[2 * i], 30, {}));
      EXPECT_EQ(fb.tokens, greedy_reference(*target, prompts[2 * i + 1], 30, {}));
    }
  }
  EXPECT_EQ(target->live_sequences(), 0);
  EXPECT_EQ(draft->live_sequences(), 0);
}

}  // namespace
}  // namespace saguaro::testing
