// Where each round's speculation comes from, per mode: sd — the draft chain-drafts it now;
// ssd — the cache entry for the last outcome (hit) or a backup for the rows that missed (jit: the
// draft chain-drafts them; fast: n-gram proposal); ar — none. Also the target's side of the
// conversation with the draft worker.
#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "saguaro/ngram_proposer.hpp"
#include "saguaro/remote_q.hpp"
#include "saguaro/target_worker.hpp"

namespace saguaro {

namespace {
constexpr auto kDraftWait = std::chrono::milliseconds(50);
// The longest the target waits for a remote draft's q rows; the link's peer timeout usually ends a
// dead link's wait long before.
constexpr auto kRemoteQWait = std::chrono::seconds(30);
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

DraftRow TargetWorker::sync_row(SequenceState& s) {
  DraftRow row;
  row.seq = s.id();
  row.committed = s.take_unsent_to_draft(&row.committed_from);
  row.params = ProcessParams{s.params().temperature, s.params().top_k, s.params().top_p, 1.f, 0};
  row.key = RowKey{s.params().seed, s.params().stream};
  row.store_q = s.sampled();
  return row;
}

void TargetWorker::supply_speculations(const Rows& rows, const std::vector<int32_t>& budget) {
  if (mode_ == Mode::kAr) return;
  Rows need;
  std::vector<int32_t> need_budget;
  for (size_t b = 0; b < rows.size(); ++b) {
    if (budget[b] <= 0) {
      rows[b]->speculation = Speculation{};
      continue;
    }
    if (mode_ == Mode::kSd || rows[b]->speculation.source == SpeculationSource::kNone) {
      need.push_back(rows[b]);
      need_budget.push_back(budget[b]);
    }
  }
  if (need.empty()) return;
  if (mode_ == Mode::kSd) {
    chain_from_draft(need, need_budget, SpeculationSource::kChain);
    return;
  }
  if (backup_.choose(static_cast<int64_t>(rows.size())) == BackupKind::kFast) {
    fast_backup(need, need_budget);
  } else {
    chain_from_draft(need, need_budget, SpeculationSource::kJitBackup);
  }
}

void TargetWorker::chain_from_draft(const Rows& rows, const std::vector<int32_t>& budget, SpeculationSource source) {
  ToDraft msg;
  msg.kind = ToDraft::Kind::kChain;
  msg.round = round_;
  msg.saguaro_c = static_cast<float>(config_.saguaro_c);
  msg.test_plant_unadjusted_q = config_.test_plant_unadjusted_q;
  // A backup speculation is verified next round and forked with the after-miss schedule.
  const std::vector<int32_t> fanout = schedule_.fanout(true);
  for (size_t b = 0; b < rows.size(); ++b) {
    DraftRow row = sync_row(*rows[b]);
    row.n = budget[b];
    row.sample_fanout = fanout;
    msg.rows.push_back(std::move(row));
  }
  const auto t0 = Clock::now();
  send_to_draft(std::move(msg));
  ToTarget reply;
  if (!await_draft(ToTarget::Kind::kChainResult, round_, &reply)) return;
  const double waited = seconds(Clock::now() - t0);
  metrics_.draft_chain_s += seconds(reply.ended - reply.started);
  metrics_.backup_s += waited;
  if (source == SpeculationSource::kJitBackup) backup_.observe_jit(waited);
  if (reply.results.size() != rows.size()) throw std::logic_error("draft chain result has the wrong number of rows");
  for (size_t b = 0; b < rows.size(); ++b) {
    Speculation spec;
    spec.tokens = std::move(reply.results[b].tokens);
    spec.q = std::move(reply.results[b].q);
    spec.source = source;
    rows[b]->speculation = std::move(spec);
    if (source == SpeculationSource::kJitBackup) ++rows[b]->metrics.backups_jit;
  }
}

void TargetWorker::fast_backup(const Rows& rows, const std::vector<int32_t>& budget) {
  for (size_t b = 0; b < rows.size(); ++b) {
    SequenceState& s = *rows[b];
    Speculation spec;
    spec.tokens = ngram_propose(s.tokens(), budget[b], vocab_, s.params().seed, s.params().stream);
    spec.tokens.resize(std::min<size_t>(spec.tokens.size(), budget[b]));
    spec.deterministic = true;  // q = one-hot: verified as a deterministic proposal
    spec.source = SpeculationSource::kFastBackup;
    s.speculation = std::move(spec);
    ++s.metrics.backups_fast;
  }
}

void TargetWorker::ensure_caches(int64_t entries, int64_t q_entries) {
  // Two generations live at once (the one being looked up and the one being published).
  const auto need = [](int64_t e) { return static_cast<size_t>(2 * e + 16); };
  if (entries > 0 && (!cache_ || cache_->capacity() < need(entries)))
    cache_ = std::make_shared<SpeculationCache>(need(entries) * 2, config_.k, vocab_, false);
  if (q_entries > 0 && (!q_cache_ || q_cache_->capacity() < need(q_entries)))
    q_cache_ = std::make_shared<SpeculationCache>(need(q_entries) * 2, config_.k, vocab_, true);
}

bool TargetWorker::send_tree_request(const Rows& rows, Rows* in_tree) {
  ToDraft msg;
  msg.kind = ToDraft::Kind::kSpeculate;
  msg.round = round_;
  msg.saguaro_c = static_cast<float>(config_.saguaro_c);
  msg.test_plant_unadjusted_q = config_.test_plant_unadjusted_q;
  const std::vector<int32_t> next_fanout = schedule_.fanout(false);  // a hit is verified with the normal schedule
  int64_t entries = 0, q_entries = 0;
  for (auto* s : rows) {
    const Speculation& spec = s->speculation;
    const int32_t n = spec.size();
    const int64_t remaining = s->params().max_new_tokens - s->generated();
    // Entries longer than the next round can verify are wasted. Branch tokens must fit the context;
    // where that would cut entries shorter than the next round's budget, the row skips the tree and
    // gets a backup instead, so a cache hit always has the same length as the chain SD would draft
    // (SSD == SD with the same seed at C = 1 holds up to the context limit).
    const int64_t depth = std::min<int64_t>(config_.k, remaining - 2);
    s->tree_fanout.clear();
    if (depth < 1 || max_context_ - (s->base() + n + 2) < depth) continue;
    const std::vector<int32_t> f = schedule_.fanout(spec.from_backup());
    std::vector<int32_t> fork(f.begin(), f.begin() + n);
    fork.push_back(f[config_.k]);  // all n drafts accepted: the "all accepted" atom
    DraftRow row = sync_row(*s);
    row.n = n;
    row.drafts = spec.tokens;
    row.fork_fanout = fork;
    row.depth = static_cast<int32_t>(depth);
    row.sample_fanout = next_fanout;
    const int64_t m = std::accumulate(fork.begin(), fork.end(), int64_t{0});
    (s->sampled() ? q_entries : entries) += m;
    s->tree_fanout = std::move(fork);
    msg.rows.push_back(std::move(row));
    in_tree->push_back(s);
  }
  if (msg.rows.empty()) return false;
  ensure_caches(entries, q_entries);
  msg.cache = cache_;
  msg.q_cache = q_cache_;
  send_to_draft(std::move(msg));
  tree_pending_ = true;
  tree_done_ = false;
  return true;
}

void TargetWorker::look_up(const Rows& in_tree) {
  // wait: block until the tree is done. partial: look up whatever is published now (the tree
  // publishes all its entries at its end, so before that nothing is). miss: a tree that is not done
  // is a miss for every row. Measured with a toy timing model (verify 4 ms, K = 4, jit backup):
  // with draft calls of 0.6 ms (tree fits in a verification) wait 435 tok/s vs partial 357 / miss
  // 397; with 1.5 ms calls (it does not) wait 167 vs partial 200 / miss 202, because the draft
  // abandons the stale tree for the backup. Hence wait is the default.
  bool look = true;
  if (config_.cache_policy == CachePolicy::kWait) {
    if (!tree_done_) {
      const auto t0 = Clock::now();
      ToTarget done;
      const bool ok = await_draft(ToTarget::Kind::kTreeDone, round_, &done);
      metrics_.wait_for_tree_s += seconds(Clock::now() - t0);
      if (!ok) return;  // draft failed: handled, rows continue autoregressively or failed
    }
  } else {
    if (!try_take_tree_done(round_)) return;  // draft failed
    look = tree_done_ || config_.cache_policy == CachePolicy::kPartial;
  }
  tree_pending_ = false;
  std::vector<int32_t> tokens;
  std::vector<float> q;
  for (auto* s : in_tree) {
    s->speculation = Speculation{};
    if (s->finished()) continue;
    const int32_t k = s->outcome_accepted, t = s->outcome_bonus;
    SpeculationCache* cache = s->sampled() ? q_cache_.get() : cache_.get();
    const CacheKey key{s->id(), k, t};
    std::shared_ptr<RemoteQ> remote_q;
    // A draft behind a wire keeps sampled entries' q rows; asking now lets them travel during the
    // next verification forward, which needs them only after the forward.
    const bool hit = look && ((cache != nullptr && cache->lookup(round_ + 1, key, &tokens, s->sampled() ? &q : nullptr)) ||
                              (s->sampled() && remote_ != nullptr && remote_->lookup_remote(round_ + 1, key, &tokens, &remote_q)));
    s->metrics.record_lookup(k, hit);
    // Only a finished tree says something about the fan-out (and the hit rate the backup policy uses).
    const int32_t n = static_cast<int32_t>(s->tree_fanout.size()) - 1;
    if (tree_done_ && k >= 0 && k <= n) schedule_.observe_hit(k == n ? config_.k : k, s->tree_fanout[k], hit);
    if (tree_done_) backup_.observe_lookup(hit);
    if (hit) {
      s->speculation.tokens = tokens;
      if (s->sampled() && !remote_q) s->speculation.q = q;
      s->speculation.remote_q = std::move(remote_q);
      s->speculation.source = SpeculationSource::kCache;
      ++s->metrics.speculations_from_cache;
    }
  }
}

void TargetWorker::collect_remote_q(SequenceState& s) {
  Speculation& spec = s.speculation;
  if (!spec.remote_q) return;
  // Bounded: a link that fails (heartbeat / peer timeout) fails the wait at once.
  const auto t0 = Clock::now();
  std::vector<float> q;
  const bool got = spec.remote_q->wait(kRemoteQWait, &q);
  metrics_.remote_q_wait_s += seconds(Clock::now() - t0);
  spec.remote_q.reset();
  const size_t need = static_cast<size_t>(spec.size()) * vocab_;
  if (got && q.size() >= need) {
    q.resize(need);  // the round may verify fewer tokens than the entry holds
    spec.q = std::move(q);
    return;
  }
  spec.q.clear();
  spec.deterministic = true;
  ++metrics_.remote_q_fallbacks;
}

void TargetWorker::account_tree(const ToTarget& msg) {
  const double total = seconds(msg.ended - msg.started);
  const int parity = static_cast<int>(msg.round & 1);
  const auto overlap_start = std::max(msg.started, verify_start_[parity]);
  const auto overlap_end = std::min(msg.ended, verify_end_[parity] > verify_start_[parity] ? verify_end_[parity] : msg.ended);
  metrics_.draft_tree_s += total;
  if (overlap_end > overlap_start) metrics_.draft_tree_hidden_s += seconds(overlap_end - overlap_start);
  ++metrics_.trees;
  if (msg.abandoned) ++metrics_.trees_abandoned;
  metrics_.cache_publish_failures += msg.publish_failures;
  if (msg.round == round_ && !msg.abandoned) tree_done_ = true;
}

bool TargetWorker::try_take_tree_done(uint64_t round) {
  ToTarget msg;
  while (transport_->receive_at_target(msg, std::chrono::microseconds(0))) {
    if (msg.kind == ToTarget::Kind::kError) {
      on_draft_failure(msg.error);
      return false;
    }
    if (msg.kind == ToTarget::Kind::kTreeDone) account_tree(msg);
  }
  (void)round;
  return true;
}

bool TargetWorker::await_draft(ToTarget::Kind kind, uint64_t round, ToTarget* out) {
  for (;;) {
    ToTarget msg;
    if (!transport_->receive_at_target(msg, kDraftWait)) {
      if (transport_->closed()) {
        on_draft_failure("the transport to the draft worker is closed");
        return false;
      }
      // Closing: a remote draft may never answer (its link is going away too); the rows go on without
      // a speculation and the worker shuts down at its next turn.
      if (transport_->epoch() != draft_epoch_) {  // a new draft: what was awaited will never come
        on_draft_failure("the draft was replaced while the target waited for it");
        return false;
      }
      if (inbox_.closing()) {
        tree_pending_ = false;
        for (auto& s : active_) s->speculation = Speculation{};
        return false;
      }
      continue;
    }
    if (msg.kind == ToTarget::Kind::kError) {
      on_draft_failure(msg.error);
      return false;
    }
    if (msg.kind == ToTarget::Kind::kTreeDone) {
      account_tree(msg);
      if (kind == ToTarget::Kind::kTreeDone && msg.round == round) {
        *out = std::move(msg);
        return true;
      }
      continue;  // a tree the target already stopped waiting for (cache policy partial / miss)
    }
    if (msg.kind == kind) {
      *out = std::move(msg);
      return true;
    }
    throw std::logic_error("target worker: unexpected message from the draft worker");
  }
}

void TargetWorker::follow_draft() {
  if (transport_ == nullptr) return;
  if (!draft_failed_ && !tree_pending_) try_take_tree_done(round_);  // late trees accounted, a failure taken
  if (transport_->epoch() == draft_epoch_) return;
  draft_epoch_ = transport_->epoch();
  // A wire attaches a new draft only after this worker took the old one's failure, so nothing of the
  // old epoch is queued or awaited; what arrives from now on (even an immediate kError) is the new one's.
  tree_pending_ = false;
  tree_done_ = false;
  // A speculation already taken from the old draft's cache stays: verification is exact whatever proposed it.
  for (auto& s : active_) s->resend_all_to_draft();
  ++metrics_.draft_reconnects;
  if (draft_failed_) {
    draft_failed_ = false;
    mode_ = config_.mode;
    for (auto& s : active_)
      if (!s->finished()) board_.push_message(s->id(), "the draft is back; speculating again");
  }
}

void TargetWorker::on_draft_failure(const std::string& message) {
  ++metrics_.draft_failures;
  draft_failed_ = true;
  draft_failure_ = message;
  tree_pending_ = false;
  mode_ = Mode::kAr;
  const std::string note = "draft worker failed: " + message;
  for (auto& s : active_) {
    if (s->finished()) continue;
    s->speculation = Speculation{};
    if (config_.strict) {
      fail(*s, note + " (strict: not continuing autoregressively)");
    } else {
      board_.push_message(s->id(), note + "; continuing autoregressively");
    }
  }
}

}  // namespace saguaro
