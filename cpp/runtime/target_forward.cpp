// The target's verification forward with failure isolation: when the batched call throws, each
// row is retried alone so only the request that cannot run fails. Also how many threads it runs on.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/target_worker.hpp"
#include "saguaro/thread_affinity.hpp"

namespace saguaro {

std::vector<int> TargetWorker::lent_cores(const std::vector<int>& target, const std::vector<int>& draft) {
  if (target.empty() || draft.empty()) return {};
  std::vector<int> all(target);
  for (int c : draft)
    if (std::find(all.begin(), all.end(), c) == all.end()) all.push_back(c);
  if (all.size() == target.size()) return {};
  std::sort(all.begin(), all.end());
  return all;
}

bool TargetWorker::draft_threads_free() const {
  if (!config_.set_target_threads || mode_ != Mode::kSsd || !draft_idle_) return false;
  const bool pinned = !config_.target_cores.empty() || !config_.draft_cores.empty();
  if (pinned && lent_cores_.empty()) return false;
  return draft_idle_();
}

void TargetWorker::size_forward_threads() {
  if (!config_.set_target_threads) return;
  const bool lend = draft_threads_free();
  const int32_t want = config_.target_threads + (lend ? config_.draft_threads : 0);
  if (lend) ++metrics_.forwards_on_draft_threads;
  if (want == forward_threads_) return;
  // Pinned workers: a lent forward widens the target worker's pin to the draft's cores too, and the
  // next forward on its own threads narrows it back. The kernels' helper threads are created by the
  // first call that needs them and keep the pin their creator had then (column_pool.hpp): in ssd
  // that is a lent forward, so they may run on either set.
  if (!config_.target_cores.empty())
    pin_current_thread(lend ? lent_cores_ : config_.target_cores);
  config_.set_target_threads(want);
  forward_threads_ = want;
}

TargetWorker::RowLogits TargetWorker::forward(const Rows& rows, const std::vector<std::vector<int32_t>>& inputs) {
  RowLogits out;
  out.block.assign(rows.size(), -1);
  out.first.assign(rows.size(), 0);
  std::vector<int64_t> ids;
  int64_t total = 0;
  for (size_t b = 0; b < rows.size(); ++b) {
    ids.push_back(rows[b]->id());
    total += static_cast<int64_t>(inputs[b].size());
  }
  auto check = [&](const Logits& l, int64_t expected) {
    if (l.rows != expected || l.vocab != vocab_)
      throw std::runtime_error("target extend returned logits of shape [" + std::to_string(l.rows) + ", " +
                               std::to_string(l.vocab) + "], expected [" + std::to_string(expected) + ", " +
                               std::to_string(vocab_) + "]");
  };
  std::string batch_error;
  size_forward_threads();
  try {
    Logits l = target_->extend(ids, inputs);
    check(l, total);
    int64_t offset = 0;
    for (size_t b = 0; b < rows.size(); ++b) {
      out.block[b] = 0;
      out.first[b] = offset;
      offset += static_cast<int64_t>(inputs[b].size());
    }
    out.blocks.push_back(std::move(l));
    return out;
  } catch (const std::exception& e) {
    batch_error = e.what();
  }
  ++metrics_.target_failures;
  if (rows.size() == 1) {
    fail(*rows[0], "target forward failed: " + batch_error);
    return out;
  }
  for (size_t b = 0; b < rows.size(); ++b) {
    try {
      target_->truncate(ids[b], rows[b]->base());  // undo whatever the failed batch appended
      Logits l = target_->extend({ids[b]}, {inputs[b]});
      check(l, static_cast<int64_t>(inputs[b].size()));
      out.block[b] = static_cast<int32_t>(out.blocks.size());
      out.first[b] = 0;
      out.blocks.push_back(std::move(l));
    } catch (const std::exception& e) {
      fail(*rows[b], std::string("target forward failed: ") + e.what());
    }
  }
  return out;
}

}  // namespace saguaro
