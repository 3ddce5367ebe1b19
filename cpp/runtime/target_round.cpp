// One round on the target worker, the same for every mode: speculations in, one target forward,
// verification, commit; in ssd the draft builds the next round's cache meanwhile.
#include <stdexcept>
#include <string>

#include "saguaro/target_worker.hpp"
#include "saguaro/row_kernels.hpp"

namespace saguaro {

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

void TargetWorker::round() {
  ++round_;
  const auto t0 = Clock::now();
  Rows rows;
  for (auto& s : active_)
    if (!s->finished()) rows.push_back(s.get());

  // A plain round (no speculation: every row verifies its pending token only) when the governor has
  // measured that plain batched decoding commits more tokens per second at this batch size. The
  // decision keeps the batch size it was made for: the round is observed for it, even when rows
  // finish before the verification below.
  // While the draft catches up in the background the round runs plain, undecided by the governor and
  // not timed as a plain round (the target runs on its own threads only meanwhile): its time beyond a
  // plain round's is a cost of the probe that waits for the catch-up.
  SpeculationGovernor::Decision decision{static_cast<int64_t>(rows.size()), false, false};
  bool governed = mode_ != Mode::kAr && !draft_catching_up();
  if (governed) decision = governor_.decide(static_cast<int64_t>(rows.size()));
  bool unpaid = false;  // a lone request the draft cannot serve in time: plain, without the draft
  if (governed && decision.speculate) {
    const CatchUp c = start_catch_up(rows);
    if (c == CatchUp::kStarted) governor_.postpone(decision);  // the speculation waits for the draft, not for the next probe
    unpaid = c == CatchUp::kUnpaid;
    governed = c == CatchUp::kNotNeeded;
  }
  const bool speculate = governed && decision.speculate;
  if (unpaid) ++metrics_.rounds_without_draft;
  else if (mode_ != Mode::kAr && !governed) ++metrics_.catch_up_rounds;
  std::vector<int32_t> budget(rows.size(), 0);
  for (size_t b = 0; b < rows.size(); ++b)
    budget[b] = speculate ? rows[b]->draft_budget(config_.k, max_context_) : 0;
  supply_speculations(rows, budget);  // may fall back to ar (draft failure) or fail rows (strict)

  Rows live;
  for (size_t b = 0; b < rows.size(); ++b) {
    SequenceState* s = rows[b];
    if (s->finished()) continue;
    if (mode_ == Mode::kAr) s->speculation = Speculation{};
    s->speculation.truncate(budget[b], vocab_);
    live.push_back(s);
  }
  rows.swap(live);
  if (rows.empty()) return;

  Rows in_tree;
  if (mode_ == Mode::kSsd && speculate) send_tree_request(rows, &in_tree);

  // Verify [r, x1..xn] for every row in one target forward.
  const int parity = static_cast<int>(round_ & 1);
  verify_start_[parity] = Clock::now();
  std::vector<std::vector<int32_t>> inputs;
  for (auto* s : rows) {
    std::vector<int32_t> in{s->tokens().back()};
    in.insert(in.end(), s->speculation.tokens.begin(), s->speculation.tokens.end());
    inputs.push_back(std::move(in));
  }
  RowLogits logits = forward(rows, inputs);
  int64_t forward_rows = 0;
  for (const auto& in : inputs) forward_rows += static_cast<int64_t>(in.size());
  std::vector<int32_t> accepted(rows.size(), 0), bonus(rows.size(), -1);
  for (size_t b = 0; b < rows.size(); ++b) {
    SequenceState& s = *rows[b];
    if (!logits.has(b) || s.finished()) continue;
    collect_remote_q(s);
    const Speculation& spec = s.speculation;
    const int32_t n = spec.size();
    const ProcessParams params{s.params().temperature, s.params().top_k, s.params().top_p, 1.f, 0};
    const RowKey key{s.params().seed, s.params().stream};
    const int64_t position = s.base() + 1;
    // q rows are read only for sampled, non-deterministic rows: exactly the rows the drafts came from.
    const float* q = (s.sampled() && !spec.deterministic && n > 0) ? spec.q.data() : nullptr;
    if (q != nullptr && spec.q.size() != static_cast<size_t>(n) * vocab_) {
      fail(s, "internal error: speculation of " + std::to_string(n) + " tokens carries " +
                  std::to_string(spec.q.size()) + " q values");
      continue;
    }
    try {
      verify_chain_where(logits.of(b), logits.first[b], n > 0 ? spec.tokens.data() : nullptr, q, n, spec.deterministic,
                         params, key, position, &accepted[b], &bonus[b]);
    } catch (const std::exception& e) {
      fail(s, std::string("target verification failed: ") + e.what());
    }
  }
  verify_end_[parity] = Clock::now();
  const double verify_s = seconds(verify_end_[parity] - verify_start_[parity]);
  metrics_.target_verify_s += verify_s;
  backup_.observe_verify(verify_s);
  if (logits.blocks.size() == 1) governor_.observe_forward(forward_rows, verify_s);
  logits = RowLogits{};

  // Commit k + 1 tokens per row; the target KV keeps r, x1..xk.
  int64_t committed_total = 0;
  for (size_t b = 0; b < rows.size(); ++b) {
    SequenceState& s = *rows[b];
    if (s.finished()) continue;
    const Speculation& spec = s.speculation;
    const int32_t n = spec.size(), k = accepted[b];
    const int64_t kv_keep = s.base() + 1 + k;
    if (k < n) {
      try {
        target_->truncate(s.id(), kv_keep);
      } catch (const std::exception& e) {
        fail(s, std::string("target truncate failed: ") + e.what());
        continue;
      }
    }
    s.metrics.record_verification(n, k);
    if (n > 0) schedule_.observe_acceptance(k, n, spec.from_backup());
    backup_.observe_committed(spec.source, k + 1);
    std::vector<int32_t> committed(spec.tokens.begin(), spec.tokens.begin() + k);
    committed.push_back(bonus[b]);
    committed_total += s.commit(committed, eos_, max_context_);
    s.outcome_accepted = k;
    s.outcome_bonus = bonus[b];
    board_.push_tokens(s.id(), s.take_new_tokens());
    if (s.finished()) finish_row(s);
  }

  board_.notify();  // wake the pollers now, not after the cache look-up (which may wait for the draft)

  // This round's speculation is spent; the next one comes from the cache (below) or a backup.
  for (auto* s : rows) s->speculation = Speculation{};
  if (mode_ == Mode::kSsd && tree_pending_) look_up(in_tree);

  ++metrics_.rounds;
  metrics_.round_rows += static_cast<int64_t>(rows.size());
  const double round_s = seconds(Clock::now() - t0);
  metrics_.round_s += round_s;
  if (rows.size() == 1 && !speculate && forward_threads_ > config_.target_threads) lone_plain_round_s_ = round_s;
  if (governed)
    governor_.observe(decision, committed_total, round_s);
  else if (mode_ != Mode::kAr && !unpaid)
    governor_.observe_catch_up(committed_total, round_s);  // a cost of the probe it waits for
}

}  // namespace saguaro
