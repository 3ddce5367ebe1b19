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
  m.q_key = CacheKey{7, 2, 11};
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
  m.entries = {CacheEntry{CacheKey{7, 1, 3}, true, {6, 7}, {0.5f, 0.5f, 1.f, 0.f}}, CacheEntry{CacheKey{8, 0, 2}, false, {1}, {}},
               CacheEntry{CacheKey{9, 0, 4}, true, {2}, {}, /*q_held=*/true}};
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
  EXPECT_EQ(d.q_key.seq, 7);
  EXPECT_EQ(d.q_key.accepted, 2);
  EXPECT_EQ(d.q_key.bonus, 11);
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
  ASSERT_EQ(d.entries.size(), 3u);
  EXPECT_FALSE(d.entries[0].q_held);
  EXPECT_TRUE(d.entries[2].q_held);
  EXPECT_TRUE(d.entries[2].q.empty());
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
// can cut the link after a number of frames towards the draft (the draft "dies"), and empty every
// q-rows answer (a draft that no longer has the rows asked for).
class LoopbackLink {
 public:
  LoopbackLink(TargetWire& wire, DraftHost& host, int64_t cut_after = -1, bool forget_q = false)
      : wire_(wire), host_(host), cut_after_(cut_after), forget_q_(forget_q) {
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
        if (!host_.next_frame(f, 5ms) || cut_) continue;
        if (forget_q_) {
          ToTarget m = decode_to_target(f);
          if (m.kind == ToTarget::Kind::kQRows) {
            m.entries[0].q.clear();
            f = encode(m);
          }
        }
        wire_.deliver(f);
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
  bool forget_q_;
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
                                             const std::vector<RequestParams>& params, RuntimeMetrics* metrics = nullptr,
                                             WireStats* target_end = nullptr, WireStats* draft_end = nullptr,
                                             bool forget_q = false) {
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  auto wire = std::make_shared<TargetWire>();
  std::vector<std::vector<int32_t>> out;
  {
    DraftHost host(draft, {}, {});
    LoopbackLink link(*wire, host, -1, forget_q);
    {
      Runtime rt(target, wire, draft->vocab_size(), draft->max_context(), wire_config(mode));
      for (auto& f : run_all(rt, prompts, params)) {
        EXPECT_TRUE(f.reason == FinishReason::kLength || f.reason == FinishReason::kStop) << f.error;
        out.push_back(f.tokens);
      }
      if (metrics) *metrics = rt.metrics();
    }
    if (target_end) *target_end = wire->stats();
    if (draft_end) *draft_end = host.stats();
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

// Sampled requests (T = 0.9, top-k on every other), one seed and stream each.
std::vector<RequestParams> sampled_params(size_t n, int32_t max_new_tokens) {
  std::vector<RequestParams> params;
  for (size_t i = 0; i < n; ++i) {
    RequestParams p;
    p.temperature = 0.9f;
    p.top_k = i % 2 ? 8 : 0;
    p.max_new_tokens = max_new_tokens;
    p.seed = 1000 + i;
    p.stream = i;
    params.push_back(p);
  }
  return params;
}

TEST(RemoteDraft, SampledSsdEqualsTheInProcessRunWithTheSameSeeds) {
  auto prompts = mixed_prompts(4, 24);
  const std::vector<RequestParams> params = sampled_params(prompts.size(), 30);
  auto target = std::make_shared<ToyModel>(target_options());
  auto draft = std::make_shared<ToyModel>(perturbed_draft_options());
  std::vector<std::vector<int32_t>> local;
  {
    Runtime rt(target, draft, wire_config(Mode::kSsd));
    for (auto& f : run_all(rt, prompts, params)) local.push_back(f.tokens);
  }
  RuntimeMetrics m;
  WireStats at_target, at_draft;
  EXPECT_EQ(run_remote(Mode::kSsd, prompts, params, &m, &at_target, &at_draft), local);
  EXPECT_GT(m.totals.speculations_from_cache, 0) << "sampled entries (with q rows) were used";
  // Only the used speculations' q rows crossed: one request and one answer per cache hit, while the
  // draft kept the q rows of every sampled entry it built.
  EXPECT_EQ(at_target.q_requests, m.totals.speculations_from_cache);
  EXPECT_EQ(at_target.q_answered, m.totals.speculations_from_cache);
  EXPECT_EQ(at_draft.q_answered, m.totals.speculations_from_cache);
  EXPECT_GT(at_draft.q_held, at_draft.q_answered) << "the trees held more entries than the target used";
  EXPECT_EQ(m.remote_q_fallbacks, 0);
}

TEST(RemoteDraft, QRowsThatNeverComeAreVerifiedAsADeterministicProposal) {
  auto prompts = mixed_prompts(4, 24);
  RuntimeMetrics m;
  WireStats at_target;
  auto got = run_remote(Mode::kSsd, prompts, sampled_params(prompts.size(), 30), &m, &at_target, nullptr,
                        /*forget_q=*/true);
  for (auto& tokens : got) EXPECT_EQ(tokens.size(), 30u) << "every request finished";
  EXPECT_GT(m.totals.speculations_from_cache, 0);
  EXPECT_EQ(m.remote_q_fallbacks, m.totals.speculations_from_cache) << "every hit fell back";
  EXPECT_EQ(at_target.q_answered, 0);
}

TEST(RemoteQ, TheDraftEndKeepsSampledQRowsAndAnswersOneRequest) {
  constexpr int64_t V = 256;
  TargetWire target_end;
  DraftWire draft_end;
  // A kSpeculate tells the target's end where the entries go (the sampled rows' cache).
  ToDraft speculate;
  speculate.kind = ToDraft::Kind::kSpeculate;
  speculate.round = 5;
  speculate.q_cache = std::make_shared<SpeculationCache>(64, 2, V, true);
  target_end.send_to_draft(speculate);
  std::string frame;
  ASSERT_TRUE(target_end.next_frame(frame, 0ms));
  draft_end.deliver(frame);
  ToDraft got;
  ASSERT_TRUE(draft_end.receive_at_draft(got, 0ms));

  std::vector<float> q_a(2 * V), q_b(2 * V);
  for (int64_t i = 0; i < 2 * V; ++i) {
    q_a[i] = static_cast<float>(i) / 1000.f;
    q_b[i] = static_cast<float>(i) / 2000.f;
  }
  ToTarget done;
  done.kind = ToTarget::Kind::kTreeDone;
  done.round = 5;
  done.entries = {CacheEntry{CacheKey{1, 0, 3}, true, {3, 4}, q_a}, CacheEntry{CacheKey{1, 1, 9}, true, {9, 2}, q_b}};
  draft_end.send_to_target(done);
  ASSERT_TRUE(draft_end.next_frame(frame, 0ms));
  EXPECT_LT(frame.size(), 2 * V * sizeof(float)) << "no q rows in the tree's frame";
  target_end.deliver(frame);
  ToTarget delivered;
  ASSERT_TRUE(target_end.receive_at_target(delivered, 0ms));
  EXPECT_EQ(delivered.published, 2);

  // The target uses entry b: only its rows cross, answered by the draft's end without the worker.
  std::vector<int32_t> tokens;
  std::shared_ptr<RemoteQ> rows;
  EXPECT_FALSE(target_end.lookup_remote(6, CacheKey{1, 2, 5}, &tokens, &rows)) << "an entry never built is a miss";
  ASSERT_TRUE(target_end.lookup_remote(6, CacheKey{1, 1, 9}, &tokens, &rows));
  EXPECT_EQ(tokens, (std::vector<int32_t>{9, 2}));
  ASSERT_TRUE(target_end.next_frame(frame, 0ms));
  draft_end.deliver(frame);
  EXPECT_FALSE(draft_end.receive_at_draft(got, 0ms)) << "the request never reaches the draft worker";
  ASSERT_TRUE(draft_end.next_frame(frame, 0ms));
  target_end.deliver(frame);
  std::vector<float> q;
  ASSERT_TRUE(rows->wait(0ms, &q));
  EXPECT_EQ(q, q_b);
  EXPECT_EQ(target_end.stats().q_answered, 1);
  EXPECT_EQ(draft_end.stats().q_held, 2);

  // Asked again (the rows were taken): an empty answer, which the target treats as "not there".
  ASSERT_TRUE(target_end.lookup_remote(6, CacheKey{1, 1, 9}, &tokens, &rows));
  ASSERT_TRUE(target_end.next_frame(frame, 0ms));
  draft_end.deliver(frame);
  ASSERT_TRUE(draft_end.next_frame(frame, 0ms));
  target_end.deliver(frame);
  EXPECT_FALSE(rows->wait(0ms, &q));

  // A link that fails ends every wait at once.
  ASSERT_TRUE(target_end.lookup_remote(6, CacheKey{1, 0, 3}, &tokens, &rows));
  target_end.fail("cut");
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(rows->wait(std::chrono::seconds(10), &q));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
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
