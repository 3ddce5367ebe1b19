#include "saguaro/target_worker.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "saguaro/thread_affinity.hpp"
#include "saguaro/row_kernels.hpp"

namespace saguaro {

namespace {
constexpr auto kIdleWait = std::chrono::milliseconds(20);
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

FanoutConfig effective_fanout(const RuntimeConfig& c) {
  FanoutConfig f = c.fanout;
  if (c.mode != Mode::kSsd) {  // no tree: any valid schedule will do (a manual list may be absent)
    f.kind = FanoutKind::kUniform;
    f.budget = std::max(1, f.budget);
  }
  return f;
}
}  // namespace

TargetWorker::TargetWorker(std::shared_ptr<Model> target, const RuntimeConfig& config, int64_t draft_max_context,
                           RequestInbox& inbox, UpdateBoard& board, DraftTransport* transport,
                           std::function<bool()> draft_idle)
    : target_(std::move(target)),
      config_(config),
      mode_(config.mode),
      vocab_(target_->vocab_size()),
      max_context_(std::min(target_->max_context(), draft_max_context)),
      eos_(target_->eos_token_ids()),
      inbox_(inbox),
      board_(board),
      transport_(transport),
      draft_idle_(std::move(draft_idle)),
      forward_threads_(config.target_threads),
      lent_cores_(lent_cores(config.target_cores, config.draft_cores)),
      remote_(dynamic_cast<RemoteEntries*>(transport)),
      schedule_(config.k, effective_fanout(config)),
      backup_(config.backup, config.backup_critical_batch, config.k),
      governor_(config.backup == BackupKind::kAuto && config.mode != Mode::kAr, config.k) {
  if (mode_ == Mode::kSd) config_.saguaro_c = 1.0;  // no cache to aim the residual at
  metrics_.totals = RequestMetrics(config.k);
  metrics_.mode = mode_name(mode_);
  snapshot_ = metrics_;
}

TargetWorker::~TargetWorker() { join(); }

void TargetWorker::start() { thread_ = std::thread([this] { run(); }); }

void TargetWorker::join() {
  if (thread_.joinable()) thread_.join();
}

RuntimeMetrics TargetWorker::metrics() const {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  return snapshot_;
}

void TargetWorker::publish_metrics() {
  metrics_.mode = mode_name(mode_);
  metrics_.fanout = schedule_.fanout(false);
  metrics_.fanout_acceptance = schedule_.acceptance(false);
  metrics_.backup_critical_batch = backup_.critical_batch();
  metrics_.plain_rounds = governor_.plain_rounds();
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = metrics_;
}

void TargetWorker::run() {
  std::string start_error;
  try {
    pin_current_thread(config_.target_cores);
    target_->attach_thread();
    if (config_.target_thread_init) config_.target_thread_init();
  } catch (const std::exception& e) {
    start_error = std::string("target worker could not start: ") + e.what();
  }
  for (;;) {
    if (inbox_.closing()) break;
    auto [subs, cancels] = inbox_.take();
    if (!start_error.empty()) {
      for (auto& sub : subs) {
        auto s = std::make_unique<SequenceState>(sub.id, std::move(sub.prompt), sub.params, config_.k, sub.submitted);
        active_.push_back(std::move(s));
        fail(*active_.back(), start_error);
      }
      release_finished();
      board_.notify();
      inbox_.wait(kIdleWait);
      continue;
    }
    try {
      follow_draft();
      admit(std::move(subs));
      apply_cancels(cancels);
      release_finished();
      board_.notify();  // first tokens and cancellations, before a round that may take a while
      if (active_.empty()) {
        flush_draft_releases();
        publish_metrics();
        inbox_.wait(kIdleWait);
        continue;
      }
      round();
    } catch (const std::exception& e) {
      // A defect, not a model failure (those are isolated per request): fail what is running, keep serving.
      for (auto& s : active_)
        if (!s->finished()) fail(*s, std::string("internal error in the target worker: ") + e.what());
    }
    release_finished();
    publish_metrics();
    board_.notify();  // failures and finishes of this turn (a round notifies its commits itself)
  }
  shutdown();
  target_->detach_thread();
}

void TargetWorker::shutdown() {
  for (auto& sub : inbox_.take().submissions) {
    active_.push_back(std::make_unique<SequenceState>(sub.id, std::move(sub.prompt), sub.params, config_.k, sub.submitted));
    active_.back()->finish(FinishReason::kCancelled);
  }
  for (auto& s : active_) {
    if (!s->finished()) s->finish(FinishReason::kCancelled);
    finish_row(*s);
  }
  active_.clear();
  if (transport_ != nullptr) {
    ToDraft stop;
    stop.kind = ToDraft::Kind::kStop;
    send_to_draft(std::move(stop));
  }
  publish_metrics();
  board_.notify();
}

void TargetWorker::admit(std::vector<Submission> subs) {
  if (subs.empty()) return;
  Rows fresh;
  for (auto& sub : subs) {
    active_.push_back(std::make_unique<SequenceState>(sub.id, std::move(sub.prompt), sub.params, config_.k, sub.submitted));
    SequenceState& s = *active_.back();
    ++metrics_.requests_submitted;
    const int64_t p = s.prompt_length();
    if (draft_failed_ && config_.strict) {
      fail(s, "the draft worker failed earlier (" + draft_failure_ + ") and strict is set: not serving requests autoregressively");
    } else if (p + 1 > max_context_) {
      fail(s, "prompt of " + std::to_string(p) + " tokens does not fit the context: max_context is " +
                  std::to_string(max_context_) + " (the smaller of target and draft) and at least one new token is needed");
    } else {
      fresh.push_back(&s);
    }
  }
  if (fresh.empty()) return;
  // ssd: the draft has its own core, so its prefill of the prompts can run during the target's instead
  // of after it (the first round's backup would otherwise wait for it). It is deferred
  //  - while the governor runs this batch size plain: then the prefill would only take memory
  //    bandwidth from the target's rounds;
  //  - when these prompts are all the work there is and the draft's threads are free to lend: then the
  //    target prefills on both its threads and the draft's (a prefill is compute-bound: on its own
  //    threads alone the time to the first token was 1.6x AR's on 2 cores), and the draft catches up
  //    in the background afterwards while the first rounds run plain (draft_catch_up.cpp). Only under
  //    the governor (backup "auto"): with it off every round speculates, the first one included.
  // A deferred row is caught up in the background or, when only a few tokens behind, when the draft is
  // next asked to speculate for it (draft_worker.cpp).
  int64_t batch = 0;
  for (auto& s : active_) batch += s->finished() ? 0 : 1;
  const bool alone = batch == static_cast<int64_t>(fresh.size());
  const bool defer = governor_.backing_off(batch) || (governor_.enabled() && alone && draft_threads_free());
  if (defer) metrics_.draft_prefills_deferred += static_cast<int64_t>(fresh.size());
  if (mode_ == Mode::kSsd && transport_ != nullptr && !draft_failed_ && !defer) {
    ToDraft msg;
    msg.kind = ToDraft::Kind::kPrefill;
    for (auto* s : fresh) msg.rows.push_back(sync_row(*s));
    send_to_draft(std::move(msg));
  }
  // One batched prefill; a failure is isolated by retrying each request alone.
  const auto t0 = Clock::now();
  std::vector<int32_t> block_of(fresh.size(), -1);  // per request: its logits block (-1: failed), row = index
  std::vector<int64_t> row_of(fresh.size(), 0);
  std::vector<Logits> blocks;
  std::vector<int64_t> ids;
  std::vector<std::vector<int32_t>> prompts;
  for (auto* s : fresh) {
    ids.push_back(s->id());
    prompts.push_back(s->tokens());
  }
  size_forward_threads();
  try {
    Logits l = target_->prefill(ids, prompts);
    if (l.rows != static_cast<int64_t>(fresh.size()) || l.vocab != vocab_)
      throw std::runtime_error("target prefill returned logits of shape [" + std::to_string(l.rows) + ", " +
                               std::to_string(l.vocab) + "], expected [" + std::to_string(fresh.size()) + ", " +
                               std::to_string(vocab_) + "]");
    for (size_t i = 0; i < fresh.size(); ++i) {
      block_of[i] = 0;
      row_of[i] = static_cast<int64_t>(i);
    }
    blocks.push_back(std::move(l));
  } catch (const std::exception& batch_error) {
    for (size_t i = 0; i < fresh.size(); ++i) {
      try {
        target_->release(ids[i]);
      } catch (const std::exception&) {
        // it may never have been allocated
      }
      try {
        Logits l = target_->prefill({ids[i]}, {prompts[i]});
        if (l.rows != 1 || l.vocab != vocab_) throw std::runtime_error("target prefill returned a wrong shape");
        block_of[i] = static_cast<int32_t>(blocks.size());
        blocks.push_back(std::move(l));
      } catch (const std::exception& e) {
        fail(*fresh[i], std::string("target prefill failed: ") + e.what());
      }
    }
  }
  const double prefill_s = seconds(Clock::now() - t0);
  metrics_.target_prefill_s += prefill_s;
  int64_t prompt_rows = 0;
  for (const auto& p : prompts) prompt_rows += static_cast<int64_t>(p.size());
  if (blocks.size() == 1) {  // one batched forward
    governor_.observe_forward(prompt_rows, prefill_s);
    if (prefill_s > 0) prompt_read_per_s_ = static_cast<double>(prompt_rows) / prefill_s;
  }
  // The first new token: drawn from p at position P with u(kResidual, P), like any bonus token.
  for (size_t i = 0; i < fresh.size(); ++i) {
    SequenceState& s = *fresh[i];
    if (block_of[i] < 0) continue;
    const ProcessParams params{s.params().temperature, s.params().top_k, s.params().top_p, 1.f, 0};
    const RowKey key{s.params().seed, s.params().stream};
    const int64_t position = s.prompt_length();
    int32_t accepted = 0, bonus = -1;
    try {
      verify_chain_where(blocks[static_cast<size_t>(block_of[i])], row_of[i], nullptr, nullptr, 0, false, params, key,
                         position, &accepted, &bonus);
    } catch (const std::exception& e) {
      fail(s, std::string("target logits after the prompt are unusable: ") + e.what());
      continue;
    }
    s.metrics.prefill_s = prefill_s;
    s.commit({bonus}, eos_, max_context_);
    s.metrics.time_to_first_token_s = seconds(Clock::now() - s.submitted);
    board_.push_tokens(s.id(), s.take_new_tokens());
    if (s.finished()) finish_row(s);
  }
}

void TargetWorker::apply_cancels(const std::vector<int64_t>& ids) {
  for (int64_t id : ids)
    for (auto& s : active_)
      if (s->id() == id && !s->finished()) {
        s->finish(FinishReason::kCancelled);
        finish_row(*s);
      }
}

void TargetWorker::fail(SequenceState& s, const std::string& message) {
  if (s.finished()) return;
  s.finish(FinishReason::kError, message);
  ++metrics_.requests_failed;
  finish_row(s);
}

void TargetWorker::finish_row(SequenceState& s) {
  try {
    target_->release(s.id());
  } catch (const std::exception&) {
    // a request that failed before its prefill holds nothing
  }
  if (transport_ != nullptr) to_release_in_draft_.push_back(s.id());
  // No cache invalidation: ids are never reused (in the process), so its entries are never looked up again, and they
  // become reclaimable with their generation (invalidate_sequence scans the whole cache).
  board_.push_tokens(s.id(), s.take_new_tokens());
  s.metrics.total_s = seconds(Clock::now() - s.submitted);
  s.metrics.generated_tokens = s.generated();
  metrics_.totals.merge(s.metrics);
  ++metrics_.requests_finished;
  publish_metrics();  // before the poller can see it finished
  board_.finish(s.id(), s.finish_reason(), s.error(), s.metrics);
}

void TargetWorker::release_finished() {
  active_.erase(std::remove_if(active_.begin(), active_.end(), [](const auto& s) { return s->finished(); }),
                active_.end());
}

void TargetWorker::flush_draft_releases() {
  if (transport_ == nullptr || to_release_in_draft_.empty()) return;
  ToDraft msg;
  msg.kind = ToDraft::Kind::kRelease;
  msg.released.swap(to_release_in_draft_);
  transport_->send_to_draft(std::move(msg));
}

void TargetWorker::send_to_draft(ToDraft msg) {
  flush_draft_releases();
  transport_->send_to_draft(std::move(msg));
}

}  // namespace saguaro
