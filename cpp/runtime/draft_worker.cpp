#include "saguaro/draft_worker.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "saguaro/logits_processing.hpp"
#include "saguaro/row_kernels.hpp"
#include "saguaro/thread_affinity.hpp"

namespace saguaro {

namespace {
constexpr auto kIdleWait = std::chrono::milliseconds(50);

ProcessParams with_saguaro(ProcessParams p, float c, const std::vector<int32_t>& fanout, size_t position) {
  p.saguaro_c = c;
  // Scale the draft's top-(F+1) at this position: the F fork candidates plus the drafted token.
  p.saguaro_topn = (c < 1.f && position < fanout.size()) ? fanout[position] + 1 : 0;
  return p;
}

// The planted test bias: replace the q~ rows by the unadjusted q rows.
void plant_unadjusted_q(const Logits& block, const std::vector<int64_t>& rows, std::vector<ProcessParams> params,
                        float* probs) {
  for (auto& p : params) {
    p.saguaro_c = 1.f;
    p.saguaro_topn = 0;
  }
  const std::vector<float> logits = rows_to_host(block, rows);
  process_probs_cpu(logits.data(), params.data(), static_cast<int64_t>(rows.size()), block.vocab, probs);
}
}  // namespace

DraftWorker::DraftWorker(std::shared_ptr<Model> draft, DraftTransport& transport, std::vector<int> cores,
                         std::function<void()> thread_init)
    : draft_(std::move(draft)), transport_(transport), cores_(std::move(cores)), thread_init_(std::move(thread_init)) {}

DraftWorker::~DraftWorker() { join(); }

void DraftWorker::start() { thread_ = std::thread([this] { run(); }); }

void DraftWorker::join() {
  if (thread_.joinable()) thread_.join();
}

void DraftWorker::run() {
  try {
    pin_current_thread(cores_);
    draft_->attach_thread();
    if (thread_init_) thread_init_();
  } catch (const std::exception& e) {
    failed_ = true;
    failure_ = std::string("draft worker could not start: ") + e.what();
  }
  for (;;) {
    ToDraft msg;
    if (!stash_.empty()) {
      msg = std::move(stash_.front());
      stash_.pop_front();
    } else if (!transport_.receive_at_draft(msg, kIdleWait)) {
      if (transport_.closed()) break;
      continue;
    }
    if (msg.kind == ToDraft::Kind::kStop) break;
    handle(msg);
    handled_.fetch_add(1, std::memory_order_release);
  }
  for (auto& entry : seqs_) {
    if (!entry.second.allocated || failed_) continue;
    try {
      draft_->release(entry.first);
    } catch (const std::exception&) {
      // shutting down: a failed release frees nothing more
    }
  }
  seqs_.clear();
  draft_->detach_thread();
}

void DraftWorker::handle(ToDraft& msg) {
  if (msg.kind == ToDraft::Kind::kRelease) {
    for (int64_t seq : msg.released) {
      auto it = seqs_.find(seq);
      if (it == seqs_.end()) continue;
      if (it->second.allocated && !failed_) {
        try {
          draft_->release(seq);
        } catch (const std::exception& e) {
          failed_ = true;
          failure_ = e.what();
        }
      }
      seqs_.erase(it);
    }
    return;
  }
  if (msg.kind == ToDraft::Kind::kPrefill) {
    // No reply: a failure surfaces as the error reply to the next request for work.
    if (failed_) return;
    try {
      for (const auto& row : msg.rows) apply_sync(row);
      catch_up(msg.rows);  // the rows it knows (before the new ones are prefilled whole)
      prefill_in_chunks(msg.rows);
    } catch (const std::exception& e) {
      failed_ = true;
      failure_ = e.what();
    }
    return;
  }
  ToTarget reply;
  try {
    for (const auto& row : msg.rows) apply_sync(row);
    if (failed_) throw std::runtime_error(failure_);
    reply = msg.kind == ToDraft::Kind::kChain ? draft_chain(msg) : build_tree(msg);
  } catch (const std::exception& e) {
    failed_ = true;
    failure_ = e.what();
    reply = ToTarget{};
    reply.kind = ToTarget::Kind::kError;
    reply.round = msg.round;
    reply.error = failure_;
  }
  transport_.send_to_target(std::move(reply));
}

void DraftWorker::apply_sync(const DraftRow& row) {
  auto& s = seqs_[row.seq];
  if (row.committed_from != static_cast<int64_t>(s.committed.size()))
    throw std::logic_error("draft worker: sequence " + std::to_string(row.seq) + " sync from position " +
                           std::to_string(row.committed_from) + " but the draft knows " +
                           std::to_string(s.committed.size()) + " committed tokens");
  s.committed.insert(s.committed.end(), row.committed.begin(), row.committed.end());
}

void DraftWorker::prefill_new(const std::vector<DraftRow>& rows, size_t hold_back) {
  std::vector<int64_t> new_ids;
  std::vector<std::vector<int32_t>> new_prompts;
  for (const auto& row : rows) {
    auto& s = seqs_.at(row.seq);
    if (s.allocated) continue;
    if (s.committed.size() < hold_back + 1)
      throw std::logic_error("draft worker: a sequence needs a prompt" + std::string(hold_back ? " and a pending token" : ""));
    new_ids.push_back(row.seq);
    new_prompts.emplace_back(s.committed.begin(), s.committed.end() - static_cast<std::ptrdiff_t>(hold_back));
  }
  if (new_ids.empty()) return;
  draft_->prefill(new_ids, new_prompts);
  for (size_t i = 0; i < new_ids.size(); ++i) {
    auto& s = seqs_.at(new_ids[i]);
    s.allocated = true;
    s.kv = std::move(new_prompts[i]);
  }
}

std::vector<int32_t> DraftWorker::resync(int64_t seq, DraftSequence& s, size_t limit) {
  size_t common = 0;
  while (common < s.kv.size() && common < limit && s.kv[common] == s.committed[common]) ++common;
  if (common < s.kv.size()) {
    draft_->truncate(seq, static_cast<int64_t>(common));
    s.kv.resize(common);
  }
  return std::vector<int32_t>(s.committed.begin() + static_cast<std::ptrdiff_t>(common),
                              s.committed.begin() + static_cast<std::ptrdiff_t>(limit));
}

void DraftWorker::catch_up(const std::vector<DraftRow>& rows) {
  std::vector<int64_t> ids;
  std::vector<std::vector<int32_t>> inputs;
  for (const auto& row : rows) {
    auto& s = seqs_.at(row.seq);
    if (!s.allocated || s.committed.size() < 2) continue;
    std::vector<int32_t> input = resync(row.seq, s, s.committed.size() - 1);
    if (input.empty()) continue;
    s.kv.insert(s.kv.end(), input.begin(), input.end());
    ids.push_back(row.seq);
    inputs.push_back(std::move(input));
  }
  if (!ids.empty()) draft_->extend(ids, inputs);
}

Logits DraftWorker::run_from_pending(const std::vector<DraftRow>& rows, const std::vector<std::vector<int32_t>>& extra,
                                     std::vector<int64_t>* first_row) {
  // New sequences (ones whose prompt no kPrefill brought): the draft's KV gets everything committed
  // except the pending token, which runs below with the others so that every row's logits come from
  // one extend.
  prefill_new(rows, 1);
  std::vector<int64_t> ids;
  std::vector<std::vector<int32_t>> inputs;
  first_row->clear();
  int64_t offset = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& s = seqs_.at(rows[i].seq);
    // always re-run from the pending token at least
    std::vector<int32_t> input = resync(rows[i].seq, s, s.committed.size() - 1);
    input.push_back(s.committed.back());
    input.insert(input.end(), extra[i].begin(), extra[i].end());
    s.kv.insert(s.kv.end(), input.begin(), input.end());
    const int64_t len = static_cast<int64_t>(input.size());
    first_row->push_back(offset + len - 1 - static_cast<int64_t>(extra[i].size()));
    offset += len;
    ids.push_back(rows[i].seq);
    inputs.push_back(std::move(input));
  }
  Logits out = draft_->extend(ids, inputs);
  if (out.rows != offset)
    throw std::runtime_error("draft extend returned " + std::to_string(out.rows) + " logits rows, expected " +
                             std::to_string(offset));
  return out;
}

ToTarget DraftWorker::draft_chain(const ToDraft& msg) {
  ToTarget reply;
  reply.kind = ToTarget::Kind::kChainResult;
  reply.round = msg.round;
  reply.started = std::chrono::steady_clock::now();
  const auto& rows = msg.rows;
  const int64_t V = draft_->vocab_size();
  reply.results.resize(rows.size());
  int32_t max_n = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    reply.results[i].seq = rows[i].seq;
    max_n = std::max(max_n, rows[i].n);
  }
  if (max_n > 0) {
    std::vector<int64_t> first;
    Logits logits = run_from_pending(rows, std::vector<std::vector<int32_t>>(rows.size()), &first);
    std::vector<size_t> active;  // rows still drafting; row r of `logits` belongs to active[r]
    for (size_t i = 0; i < rows.size(); ++i)
      if (rows[i].n > 0) active.push_back(i);
    std::vector<float> probs;
    for (int32_t step = 0; step < max_n && !active.empty(); ++step) {
      const int64_t N = static_cast<int64_t>(active.size());
      probs.resize(N * V);
      std::vector<ProcessParams> params(N);
      std::vector<RowKey> keys(N);
      std::vector<int64_t> positions(N), src(N);
      std::vector<int32_t> tokens(N);
      std::vector<uint8_t> want_q(N);
      for (int64_t r = 0; r < N; ++r) {
        const DraftRow& row = rows[active[r]];
        src[r] = step == 0 ? first[active[r]] : r;
        params[r] = with_saguaro(row.params, msg.saguaro_c, row.sample_fanout, step);
        keys[r] = row.key;
        positions[r] = static_cast<int64_t>(seqs_.at(row.seq).committed.size()) + step;  // base + 1 + step
        want_q[r] = row.store_q ? 1 : 0;
      }
      sample_rows_where(logits, src, params.data(), keys.data(), positions.data(), probs.data(), tokens.data(),
                        want_q.data());
      if (msg.test_plant_unadjusted_q) plant_unadjusted_q(logits, src, params, probs.data());
      std::vector<size_t> next;
      std::vector<int64_t> ids;
      std::vector<std::vector<int32_t>> inputs;
      for (int64_t r = 0; r < N; ++r) {
        const DraftRow& row = rows[active[r]];
        auto& res = reply.results[active[r]];
        res.tokens.push_back(tokens[r]);
        if (row.store_q) res.q.insert(res.q.end(), probs.begin() + r * V, probs.begin() + (r + 1) * V);
        if (step + 1 < row.n) {
          next.push_back(active[r]);
          ids.push_back(row.seq);
          inputs.push_back({tokens[r]});
          seqs_.at(row.seq).kv.push_back(tokens[r]);
        }
      }
      active.swap(next);
      if (!active.empty()) {
        logits = draft_->extend(ids, inputs);
        if (logits.rows != static_cast<int64_t>(active.size()))
          throw std::runtime_error("draft extend returned " + std::to_string(logits.rows) + " rows, expected " +
                                   std::to_string(active.size()));
      }
    }
  }
  reply.ended = std::chrono::steady_clock::now();
  return reply;
}

bool DraftWorker::newer_work_arrived() {
  take_new_messages();
  // Releases and prefills are bookkeeping, not newer speculation work: the tree finishes first.
  for (const auto& m : stash_)
    if (m.kind != ToDraft::Kind::kRelease && m.kind != ToDraft::Kind::kPrefill) return true;
  return false;
}

ToTarget DraftWorker::build_tree(const ToDraft& msg) {
  ToTarget reply;
  reply.kind = ToTarget::Kind::kTreeDone;
  reply.round = msg.round;
  reply.started = std::chrono::steady_clock::now();
  const auto& rows = msg.rows;
  const int64_t V = draft_->vocab_size();

  // Trunk: one forward over [catch-up..., r, x1..xn] gives L_0..L_n for every row.
  std::vector<std::vector<int32_t>> extra;
  for (const auto& row : rows) extra.push_back(row.drafts);
  std::vector<int64_t> first;
  Logits trunk = run_from_pending(rows, extra, &first);

  // Fork: branch (j, t) = "j drafts accepted, bonus t".
  struct Branch {
    size_t row;
    int32_t j;
    int32_t bonus;
    int64_t visible;
  };
  std::vector<Branch> branches;
  int32_t depth = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const DraftRow& row = rows[i];
    if (row.depth <= 0) continue;
    const int32_t n = static_cast<int32_t>(row.drafts.size());
    if (static_cast<int32_t>(row.fork_fanout.size()) != n + 1)
      throw std::logic_error("draft worker: fork fan-out must have one entry per outcome position");
    const int32_t fmax = std::max(1, *std::max_element(row.fork_fanout.begin(), row.fork_fanout.end()));
    std::vector<int32_t> candidates((n + 1) * fmax);
    fanout_candidates_where(trunk, first[i], row.drafts.data(), row.fork_fanout.data(), n, fmax, candidates.data());
    const int64_t base = static_cast<int64_t>(seqs_.at(row.seq).committed.size()) - 1;
    for (int32_t j = 0; j <= n; ++j)
      for (int32_t f = 0; f < fmax; ++f) {
        const int32_t t = candidates[j * fmax + f];
        if (t >= 0) branches.push_back(Branch{i, j, t, base + j + 1});
      }
    depth = std::max(depth, row.depth);
  }
  trunk = Logits{};

  // Tree decode: every branch takes part in every step (the adapter's scratch is per call order).
  const int64_t N = static_cast<int64_t>(branches.size());
  std::vector<int64_t> ids(N), visible(N);
  std::vector<int32_t> inputs(N);
  std::vector<ProcessParams> params(N);
  std::vector<RowKey> keys(N);
  std::vector<int64_t> positions(N);
  std::vector<int32_t> sampled(N);
  std::vector<std::vector<int32_t>> tokens(N);
  std::vector<std::vector<float>> q(N);
  std::vector<float> probs(N * V);
  std::vector<int64_t> all_rows(N);
  std::vector<uint8_t> want_q(N);
  for (int64_t b = 0; b < N; ++b) {
    ids[b] = rows[branches[b].row].seq;
    visible[b] = branches[b].visible;
    inputs[b] = branches[b].bonus;
    keys[b] = rows[branches[b].row].key;
    all_rows[b] = b;
    want_q[b] = rows[branches[b].row].store_q ? 1 : 0;
  }
  for (int32_t d = 0; d < depth && N > 0; ++d) {
    if (newer_work_arrived()) {
      reply.abandoned = true;
      break;
    }
    Logits logits = draft_->tree_step(ids, visible, inputs, d);
    if (logits.rows != N)
      throw std::runtime_error("draft tree_step returned " + std::to_string(logits.rows) + " rows, expected " +
                               std::to_string(N));
    for (int64_t b = 0; b < N; ++b) {
      const DraftRow& row = rows[branches[b].row];
      params[b] = with_saguaro(row.params, msg.saguaro_c, row.sample_fanout, d);
      positions[b] = visible[b] + d + 1;
    }
    sample_rows_where(logits, all_rows, params.data(), keys.data(), positions.data(), probs.data(), sampled.data(),
                      want_q.data());
    if (msg.test_plant_unadjusted_q) plant_unadjusted_q(logits, all_rows, params, probs.data());
    for (int64_t b = 0; b < N; ++b) {
      const DraftRow& row = rows[branches[b].row];
      if (d >= row.depth) continue;
      tokens[b].push_back(sampled[b]);
      if (row.store_q) q[b].insert(q[b].end(), probs.begin() + b * V, probs.begin() + (b + 1) * V);
      inputs[b] = sampled[b];
    }
  }

  // Publish (only complete trees: an abandoned tree's entries would be for an outcome already looked up).
  if (!reply.abandoned) {
    for (int64_t b = 0; b < N; ++b) {
      const DraftRow& row = rows[branches[b].row];
      const CacheKey key{row.seq, branches[b].j, branches[b].bonus};
      if (!msg.cache && !msg.q_cache) {  // a remote draft: the target's end of the wire publishes
        reply.entries.push_back(CacheEntry{key, row.store_q, std::move(tokens[b]), std::move(q[b])});
        continue;
      }
      SpeculationCache* cache = row.store_q ? msg.q_cache.get() : msg.cache.get();
      if (cache == nullptr) throw std::logic_error("draft worker: no speculation cache for a row");
      const bool ok = cache->publish(msg.round + 1, key, tokens[b].data(), static_cast<int32_t>(tokens[b].size()),
                                     row.store_q ? q[b].data() : nullptr);
      ++(ok ? reply.published : reply.publish_failures);
    }
  }
  reply.ended = std::chrono::steady_clock::now();
  return reply;
}

}  // namespace saguaro
