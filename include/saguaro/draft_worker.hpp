#pragma once
// The draft side: a thread that owns the draft model. It drafts chains (sd, jit backups) and, in
// ssd, builds the speculation cache for the next round while the target verifies: trunk forward
// over S_T, fork (top-F_j candidates per outcome position), K tree steps over all branches,
// publish (tokens + the exact q rows they were sampled from).
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "saguaro/draft_messages.hpp"
#include "saguaro/model.hpp"
#include "saguaro/transport.hpp"

namespace saguaro {

using DraftTransport = Transport<ToDraft, ToTarget>;

class DraftWorker {
 public:
  DraftWorker(std::shared_ptr<Model> draft, DraftTransport& transport, std::vector<int> cores,
              std::function<void()> thread_init);
  ~DraftWorker();  // joins
  void start();
  void join();
  // Messages taken from the transport and handled to the end (any thread may read it): equal to the
  // messages sent, the worker has no work and its threads are idle.
  uint64_t messages_handled() const { return handled_.load(std::memory_order_acquire); }

 private:
  // What the draft knows of a sequence: the committed tokens and the tokens now in its KV.
  struct DraftSequence {
    std::vector<int32_t> committed;
    std::vector<int32_t> kv;
    bool allocated = false;
  };

  void run();
  void handle(ToDraft& msg);
  void apply_sync(const DraftRow& row);
  // Prefills each not yet allocated row's committed tokens, less the last `hold_back` (the pending
  // token, which run_from_pending runs with the others).
  void prefill_new(const std::vector<DraftRow>& rows, size_t hold_back);
  // A kPrefill message's new rows, prefilled whole in chunks; a row the target released meanwhile, or
  // every row once a stop arrived, is left where its last chunk ended (draft_background_prefill.cpp).
  void prefill_in_chunks(const std::vector<DraftRow>& rows);
  // Takes every message waiting on the transport into stash_, in order, without handling it.
  void take_new_messages();
  // Whether stash_ holds a release of `seq` or a stop.
  bool stashed_release_or_stop(int64_t seq) const;
  // The background catch-up (target_worker.hpp): each allocated row's KV brought to its committed
  // tokens but the pending one in one forward, whose logits nobody reads. Rows not allocated are left
  // to prefill_new.
  void catch_up(const std::vector<DraftRow>& rows);
  // Truncates the draft KV of `s` to its longest prefix that agrees with the committed tokens (at most
  // `limit` of them) and returns the committed tokens after it, up to `limit`.
  std::vector<int32_t> resync(int64_t seq, DraftSequence& s, size_t limit);
  // Brings each row's draft KV to the committed prefix minus the pending token and runs
  // [catch-up..., r] + extra[i]; returns the logits and each row's first row index of its
  // last 1 + extra[i].size() positions.
  Logits run_from_pending(const std::vector<DraftRow>& rows, const std::vector<std::vector<int32_t>>& extra,
                          std::vector<int64_t>* first_row);
  ToTarget draft_chain(const ToDraft& msg);
  ToTarget build_tree(const ToDraft& msg);
  bool newer_work_arrived();

  std::shared_ptr<Model> draft_;
  DraftTransport& transport_;
  std::vector<int> cores_;
  std::function<void()> thread_init_;
  std::thread thread_;
  std::unordered_map<int64_t, DraftSequence> seqs_;
  std::deque<ToDraft> stash_;   // messages received while building a tree or prefilling in chunks
  bool failed_ = false;
  std::string failure_;
  std::atomic<uint64_t> handled_{0};
};

}  // namespace saguaro
