// The wire to a draft in another process: frames round-trip and refuse garbage; a runtime whose draft
// sits behind a TargetWire / DraftHost pair (frames moved by a loopback pump standing in for the
// network link) is exact; a link cut mid-run loses nothing (the target continues autoregressively);
// a reconnected draft is used again from a new epoch.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "saguaro/draft_host.hpp"
#include "saguaro/wire_format.hpp"
#include "saguaro/wire_transport.hpp"
#include "test_runtime_helpers.hpp"

namespace saguaro::testing {
namespace {

using namespace std::chrono_literals;

ToDraft sample_to_draft() {
  ToDraft m;
  m.kind = ToDraft::Kind::kSpeculate;
  m.round = 42;
  m.saguaro_c = 0.75f;
  m.test_plant_unadjusted_q = true;
  m.released = {3, 9};
  DraftRow r;
  r.seq = 7;
  r.committed_from = 5;
  r.committed = {1, 2, 3};
  r.params = ProcessParams{0.7f, 20, 0.9f, 0.5f, 3};
  r.key = RowKey{123456789ULL, 4};
  r.store_q = true;
  r.n = 2;
  r.drafts = {8, 9};
  r.fork_fanout = {2, 1, 1};
  r.depth = 2;
  r.sample_fanout = {2, 1, 1};
  m.rows = {r, DraftRow{}};
  return m;
}

ToTarget sample_to_target() {
  ToTarget m;
  m.kind = ToTarget::Kind::kTreeDone;
  m.round = 41;
  m.started = std::chrono::steady_clock::now();
  m.ended = m.started + 3ms;
  m.published = 5;
  m.publish_failures = 1;
  m.abandoned = true;
  m.error = "why";
  m.results = {ChainResult{7, {4, 5}, {0.25f, 0.75f, 0.5f, 0.5f}}};
  m.entries = {CacheEntry{CacheKey{7, 1, 3}, true, {6, 7}, {0.5f, 0.5f, 1.f, 0.f}}, CacheEntry{CacheKey{8, 0, 2}, false, {1}, {}}};
  return m;
}

TEST(WireFormat, ToDraftRoundTripsEveryField) {
  const ToDraft m = sample_to_draft();
  const ToDraft d = decode_to_draft(encode(m));
  EXPECT_EQ(d.kind, m.kind);
  EXPECT_EQ(d.round, m.round);
  EXPECT_EQ(d.saguaro_c, m.saguaro_c);
  EXPECT_EQ(d.test_plant_unadjusted_q, m.test_plant_unadjusted_q);
  EXPECT_EQ(d.released, m.released);
  ASSERT_EQ(d.rows.size(), 2u);
  const DraftRow &a = d.rows[0], &b = m.rows[0];
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.committed_from, b.committed_from);
  EXPECT_EQ(a.committed, b.committed);
  EXPECT_EQ(a.params.temperature, b.params.temperature);
  EXPECT_EQ(a.params.top_k, b.params.top_k);
  EXPECT_EQ(a.params.top_p, b.params.top_p);
  EXPECT_EQ(a.params.saguaro_c, b.params.saguaro_c);
  EXPECT_EQ(a.params.saguaro_topn, b.params.saguaro_topn);
  EXPECT_EQ(a.key.seed, b.key.seed);
  EXPECT_EQ(a.key.stream, b.key.stream);
  EXPECT_EQ(a.store_q, b.store_q);
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.drafts, b.drafts);
  EXPECT_EQ(a.fork_fanout, b.fork_fanout);
  EXPECT_EQ(a.depth, b.depth);
  EXPECT_EQ(a.sample_fanout, b.sample_fanout);
  EXPECT_EQ(d.cache, nullptr);  // the cache handles never cross
}

TEST(WireFormat, ToTargetRoundTripsEveryFieldAndKeepsTheDuration) {
  const ToTarget m = sample_to_target();
  const ToTarget d = decode_to_target(encode(m));
  EXPECT_EQ(d.kind, m.kind);
  EXPECT_EQ(d.round, m.round);
  EXPECT_EQ(d.ended - d.started, std::chrono::duration_cast<std::chrono::steady_clock::duration>(3ms));
  EXPECT_EQ(d.published, m.published);
  EXPECT_EQ(d.publish_failures, m.publish_failures);
  EXPECT_EQ(d.abandoned, m.abandoned);
  EXPECT_EQ(d.error, m.error);
  ASSERT_EQ(d.results.size(), 1u);
  EXPECT_EQ(d.results[0].seq, 7);
  EXPECT_EQ(d.results[0].tokens, m.results[0].tokens);
  EXPECT_EQ(d.results[0].q, m.results[0].q);
  ASSERT_EQ(d.entries.size(), 2u);
  EXPECT_EQ(d.entries[0].key.seq, 7);
  EXPECT_EQ(d.entries[0].key.accepted, 1);
  EXPECT_EQ(d.entries[0].key.bonus, 3);
  EXPECT_TRUE(d.entries[0].store_q);
  EXPECT_EQ(d.entries[0].tokens, m.entries[0].tokens);
  EXPECT_EQ(d.entries[0].q, m.entries[0].q);
  EXPECT_FALSE(d.entries[1].store_q);
}

TEST(WireFormat, EveryTruncationAndCorruptionIsAWireError) {
  const std::string good = encode(sample_to_target());
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_THROW(decode_to_target(std::string_view(good).substr(0, n)), WireError) << "prefix of " << n << " bytes";
  EXPECT_THROW(decode_to_target(good + "x"), WireError);  // trailing bytes
  std::string bad_magic = good;
  bad_magic[0] ^= 0x5a;
  EXPECT_THROW(decode_to_target(bad_magic), WireError);
  std::string other_version = good;
  other_version[4] = static_cast<char>(kWireVersion + 1);
  try {
    decode_to_target(other_version);
    FAIL() << "another wire version decoded";
  } catch (const WireError& e) {
    EXPECT_NE(std::string(e.what()).find("version"), std::string::npos) << e.what();
  }
  EXPECT_THROW(decode_to_draft(good), WireError);  // a ToTarget frame is not a ToDraft one
  std::string huge = encode(sample_to_draft());
  huge[huge.size() - 1] = '\x7f';  // the top byte of the last vector's length: absurd, refused before allocating
  EXPECT_THROW(decode_to_draft(huge), WireError);
}

// Moves frames between a TargetWire and a DraftHost on two threads, as the network link would; it
// can cut the link after a number of frames towards the draft (the draft "dies").
class LoopbackLink {
 public:
  LoopbackLink(TargetWire& wire, DraftHost& host, int64_t cut_after = -1) : wire_(wire), host_(host), cut_after_(cut_after) {
    to_draft_ = std::thread([this] {
      int64_t sent = 0;
      while (!stop_) {
        std::string f;
        if (!wire_.next_frame(f, 5ms)) continue;
        if (cut_after_ >= 0 && sent >= cut_after_) {
          wire_.fail("link cut by the test");
          cut_ = true;
          return;
        }
        host_.deliver(f);
        ++sent;
      }
    });
    to_target_ = std::thread([this] {
      while (!stop_ && !cut_) {
        std::string f;
        if (host_.next_frame(f, 5ms) && !cut_) wire_.deliver(f);
      }
    });
  }
  ~LoopbackLink() {
    stop_ = true;
    to_draft_.join();
    to_target_.join();
  }
  bool cut() const { return cut_; }

 private:
  TargetWire& wire_;
  DraftHost& host_;
  int64_t cut_after_;
  std::atomic<bool> stop_{false}, cut_{false};
  std::thread to_draft_, to_target_;
};

// jit backups: the speculation governor (backup "auto") may choose plain rounds for toy models, and
// these tests are about what crosses the wire.
RuntimeConfig wire_config(Mode mode) {
  RuntimeConfig c = config_for(mode, 3);
  c.backup = BackupKind::kJit;
  return c;
}

std::vector<std::vector<int32_t>> run_remote(Mode mode, const std::vector<std::vector<int32_t>>& prompts,
                                             const std::vector<RequestParams>& params, RuntimeMetrics* metrics = nullptr) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  auto wire = std::make_shared<TargetWire>();
  std::vector<std::vector<int32_t>> out;
  {
    DraftHost host(draft, {}, {});
    LoopbackLink link(*wire, host);
    {
      Runtime rt(target, wire, draft->vocab_size(), draft->max_context(), wire_config(mode));
      for (auto& f : run_all(rt, prompts, params)) {
        EXPECT_TRUE(f.reason == FinishReason::kLength || f.reason == FinishReason::kStop) << f.error;
        out.push_back(f.tokens);
      }
      if (metrics) *metrics = rt.metrics();
    }
    std::this_thread::sleep_for(20ms);  // the kStop frame crosses
  }
  EXPECT_EQ(draft->live_sequences(), 0) << "the draft host freed the target's sequences";
  return out;
}

TEST(RemoteDraft, GreedySdAndSsdEqualTheReference) {
  auto prompts = mixed_prompts(5, 24);
  RequestParams p;
  p.max_new_tokens = 30;
  const std::vector<RequestParams> params(prompts.size(), p);
  ToyModel reference(target_options());
  for (Mode mode : {Mode::kSd, Mode::kSsd}) {
    RuntimeMetrics m;
    auto got = run_remote(mode, prompts, params, &m);
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(got[i], greedy_reference(reference, prompts[i], 30, {})) << mode_name(mode) << " request " << i;
    EXPECT_EQ(m.draft_failures, 0);
    if (mode == Mode::kSsd) {
      EXPECT_GT(m.trees, 0);
      EXPECT_GT(m.totals.speculations_from_cache, 0) << "entries crossed the wire into the target's cache";
    }
  }
}

TEST(RemoteDraft, SampledSsdEqualsTheInProcessRunWithTheSameSeeds) {
  auto prompts = mixed_prompts(4, 24);
  std::vector<RequestParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) {
    RequestParams p;
    p.temperature = 0.9f;
    p.top_k = i % 2 ? 8 : 0;
    p.max_new_tokens = 30;
    p.seed = 1000 + i;
    p.stream = i;
    params.push_back(p);
  }
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  std::vector<std::vector<int32_t>> local;
  {
    Runtime rt(target, draft, wire_config(Mode::kSsd));
    for (auto& f : run_all(rt, prompts, params)) local.push_back(f.tokens);
  }
  RuntimeMetrics m;
  EXPECT_EQ(run_remote(Mode::kSsd, prompts, params, &m), local);
  EXPECT_GT(m.totals.speculations_from_cache, 0) << "sampled entries (with q rows) were used";
}

TEST(RemoteDraft, ACutLinkLosesNoRequestAndAReconnectedDraftIsUsedAgain) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  auto wire = std::make_shared<TargetWire>();
  auto prompts = mixed_prompts(4, 24);
  RequestParams p;
  p.max_new_tokens = 40;
  ToyModel reference(target_options());
  Runtime rt(target, wire, draft->vocab_size(), draft->max_context(), wire_config(Mode::kSsd));
  {
    auto host = std::make_unique<DraftHost>(draft, std::vector<int>{}, std::function<void()>{});
    LoopbackLink link(*wire, *host, /*cut_after=*/6);
    auto got = run_all(rt, prompts, std::vector<RequestParams>(prompts.size(), p));
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(got[i].tokens, greedy_reference(reference, prompts[i], 40, {})) << "request " << i;
      EXPECT_EQ(got[i].reason, FinishReason::kLength);
    }
    EXPECT_TRUE(link.cut());
    EXPECT_EQ(rt.metrics().draft_failures, 1);
    EXPECT_EQ(rt.metrics().mode, "ar");
    host->close();
    EXPECT_EQ(draft->live_sequences(), 0) << "a closed host frees what the lost target left";
  }
  // A new draft at the same place: a new epoch; the runtime speculates again from its next turn.
  DraftHost host(draft, {}, {});
  LoopbackLink link(*wire, host);
  wire->reconnected();
  EXPECT_THROW(wire->reconnected(), std::logic_error) << "a link that is up cannot be reconnected";
  const int64_t trees_before = rt.metrics().trees;
  auto got = run_all(rt, prompts, std::vector<RequestParams>(prompts.size(), p));
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i].tokens, greedy_reference(reference, prompts[i], 40, {}));
  const RuntimeMetrics m = rt.metrics();
  EXPECT_EQ(m.draft_reconnects, 1);
  EXPECT_EQ(m.mode, "ssd");
  EXPECT_GT(m.trees, trees_before) << "the reconnected draft built trees again";
  rt.close();
}

TEST(RemoteDraft, ARemoteDraftOfAnotherVocabularyOrForArIsRefused) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto wire = std::make_shared<TargetWire>();
  EXPECT_THROW(Runtime(target, wire, target->vocab_size() + 1, 512, config_for(Mode::kSsd)), std::invalid_argument);
  EXPECT_THROW(Runtime(target, wire, target->vocab_size(), 512, config_for(Mode::kAr)), std::invalid_argument);
  EXPECT_THROW(Runtime(target, nullptr, target->vocab_size(), 512, config_for(Mode::kSsd)), std::invalid_argument);
}

}  // namespace
}  // namespace saguaro::testing
