// The draft's prefill of prompts sent ahead of any speculation (a kPrefill message: at admission, or
// the background catch-up of target_worker.hpp), in chunks of kPrefillChunk tokens. Between chunks the
// draft takes its new messages (kept for later, in order) and stops prefilling a sequence the target
// has released meanwhile, or everything once asked to stop. A short answer to a long prompt finishes
// long before the draft has read the prompt on its core (seconds on a CPU: a 1,400-token prompt took
// the 0.5B draft longer than the 1.5B target's 64 tokens); in one call the draft would go on reading it
// for nobody, and the next request's prefill would queue behind.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "saguaro/draft_worker.hpp"

namespace saguaro {

namespace {
// Per chunk: long enough that a forward still streams the weights once for many rows (a prefill's
// cost is its compute), short enough that a release waits at most a fraction of a second on a CPU.
constexpr size_t kPrefillChunk = 256;
}  // namespace

void DraftWorker::take_new_messages() {
  ToDraft msg;
  while (transport_.receive_at_draft(msg, std::chrono::microseconds(0))) stash_.push_back(std::move(msg));
}

bool DraftWorker::stashed_release_or_stop(int64_t seq) const {
  for (const auto& m : stash_) {
    if (m.kind == ToDraft::Kind::kStop) return true;
    if (m.kind == ToDraft::Kind::kRelease && std::find(m.released.begin(), m.released.end(), seq) != m.released.end())
      return true;
  }
  return false;
}

void DraftWorker::prefill_in_chunks(const std::vector<DraftRow>& rows) {
  std::vector<int64_t> ids;
  for (const auto& row : rows) {
    const auto& s = seqs_.at(row.seq);
    if (s.allocated || std::find(ids.begin(), ids.end(), row.seq) != ids.end()) continue;
    if (s.committed.empty()) throw std::logic_error("draft worker: a sequence needs a prompt");
    ids.push_back(row.seq);
  }
  for (size_t done = 0; !ids.empty(); done += kPrefillChunk) {
    std::vector<std::vector<int32_t>> chunks;
    for (int64_t id : ids) {
      const auto& c = seqs_.at(id).committed;
      const size_t end = std::min(c.size(), done + kPrefillChunk);
      chunks.emplace_back(c.begin() + static_cast<std::ptrdiff_t>(done), c.begin() + static_cast<std::ptrdiff_t>(end));
    }
    if (done == 0) {
      draft_->prefill(ids, chunks);
    } else {
      draft_->extend(ids, chunks);
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      auto& s = seqs_.at(ids[i]);
      s.allocated = true;
      s.kv.insert(s.kv.end(), chunks[i].begin(), chunks[i].end());
    }
    // A sequence left with part of its prompt in the KV is released by the stashed message, or, if
    // asked for work before that, resumed from its KV like any row behind (run_from_pending, catch_up).
    take_new_messages();
    const size_t next = done + kPrefillChunk;
    ids.erase(std::remove_if(ids.begin(), ids.end(),
                             [&](int64_t id) { return seqs_.at(id).committed.size() <= next || stashed_release_or_stop(id); }),
              ids.end());
  }
}

}  // namespace saguaro
