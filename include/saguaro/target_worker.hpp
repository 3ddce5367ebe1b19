#pragma once
// The target side: a thread that owns the target model and runs the rounds. Each round it makes
// sure every running sequence has a speculation (ar: none; sd: the draft chain-drafts it now; ssd:
// the cache entry found after the last round, or a backup), tells the draft to speculate on this
// round's outcomes (ssd), verifies all rows in one target forward, commits, and looks up the cache.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "saguaro/backup_policy.hpp"
#include "saguaro/speculation_governor.hpp"
#include "saguaro/draft_worker.hpp"
#include "saguaro/fanout_schedule.hpp"
#include "saguaro/metrics.hpp"
#include "saguaro/model.hpp"
#include "saguaro/remote_q.hpp"
#include "saguaro/request_inbox.hpp"
#include "saguaro/runtime_config.hpp"
#include "saguaro/sequence_state.hpp"
#include "saguaro/speculation_cache.hpp"
#include "saguaro/update_board.hpp"

namespace saguaro {

class TargetWorker {
 public:
  // transport is null in mode ar (no draft worker). draft_idle, when given (an in-process draft), says
  // whether the draft has handled everything sent to it: its threads are then free to lend.
  TargetWorker(std::shared_ptr<Model> target, const RuntimeConfig& config, int64_t draft_max_context,
               RequestInbox& inbox, UpdateBoard& board, DraftTransport* transport,
               std::function<bool()> draft_idle = {});
  ~TargetWorker();  // joins
  void start();
  void join();
  RuntimeMetrics metrics() const;

 private:
  using Rows = std::vector<SequenceState*>;
  // Logits rows of one target forward, possibly from several calls (after a failure is isolated).
  struct RowLogits {
    std::vector<Logits> blocks;
    std::vector<int32_t> block;       // per row: its block, -1 when the row failed
    std::vector<int64_t> first;       // per row: its first logits row in that block
    bool has(size_t b) const { return block[b] >= 0; }
    const Logits& of(size_t b) const { return blocks[static_cast<size_t>(block[b])]; }
  };

  void run();
  void shutdown();
  void admit(std::vector<Submission> submissions);
  void apply_cancels(const std::vector<int64_t>& ids);
  void round();

  // speculation supply (target_speculation.cpp)
  void supply_speculations(const Rows& rows, const std::vector<int32_t>& budget);
  void chain_from_draft(const Rows& rows, const std::vector<int32_t>& budget, SpeculationSource source);
  void fast_backup(const Rows& rows, const std::vector<int32_t>& budget);
  bool send_tree_request(const Rows& rows, Rows* in_tree);
  void ensure_caches(int64_t entries, int64_t q_entries);
  void look_up(const Rows& in_tree);
  // A cache hit's q rows that a remote draft kept: waits for them (they were asked for at the lookup);
  // when they do not come, the speculation is verified as a deterministic proposal (exact).
  void collect_remote_q(SequenceState& s);
  DraftRow sync_row(SequenceState& s);
  // Waits for a draft message of `kind` for `round`; false when the draft failed (handled).
  bool await_draft(ToTarget::Kind kind, uint64_t round, ToTarget* out);
  bool try_take_tree_done(uint64_t round);
  void account_tree(const ToTarget& msg);
  void on_draft_failure(const std::string& message);
  // Once per turn: takes a draft failure that arrived while no round talked to the draft (an idle
  // runtime, plain rounds), and follows a new draft behind the transport (a reconnect): it knows no
  // sequence, so every live sequence is re-sent whole, and a target that fell back to ar speculates again.
  void follow_draft();

  // the draft's catch-up in the background (draft_catch_up.cpp). A batch that turns to speculation
  // after plain rounds has rows the draft is far behind on (prompts whose draft prefill was deferred,
  // tokens committed by plain rounds): a tree or chain request would have the target wait while the
  // draft runs all of them on its core (a probe at 16 rows waited 3.6 s; at the tail of a level of
  // clients the last request waited for its draft prefill). Instead those rows are sent to the draft
  // to catch up, and the rounds run plain until it has: the target decodes on its own threads then
  // instead of waiting. An in-process draft only (its handled messages are known: draft_idle_).
  static constexpr int64_t kBackgroundCatchUp = 16;  // tokens behind from which a row catches up first:
                                                     // more are a forward dearer than a decode step
  // Whether the draft is still catching up (the round then runs plain, decided by no one). When it
  // has just finished, its reading rate is measured.
  bool draft_catching_up();
  // What start_catch_up did for a round the governor decided to speculate.
  enum class CatchUp {
    kNotNeeded,  // no row is far behind (or no in-process draft): the round speculates
    kStarted,    // rows far behind were sent to the draft; the round runs plain
    kUnpaid,     // a lone request whose draft could not read its tokens before the request ends (at
                 // its plain pace), or whose plain pace is not measured yet: the round runs plain, on
                 // the draft's idle threads too, and nothing is sent to the draft
  };
  // For a round the governor decided to speculate: sends the rows more than kBackgroundCatchUp tokens
  // behind to the draft to catch up, unless the catch-up cannot pay (a lone request: see kUnpaid).
  CatchUp start_catch_up(const Rows& rows);
  // A lone row's catch-up would end before the row's remaining tokens at its plain pace.
  bool catch_up_pays(const SequenceState& s, int64_t behind) const;

  // target forwards with failure isolation (target_forward.cpp)
  RowLogits forward(const Rows& rows, const std::vector<std::vector<int32_t>>& inputs);
  // Before each target forward: in ssd, while the in-process draft has no work (the governor runs
  // plain rounds, prefills are deferred), the draft's threads sit idle on their cores, so the forward
  // runs on target_threads + draft_threads (pinned workers: on the target's and the draft's cores);
  // otherwise on target_threads. Not without a set_target_threads hook, and not with pinned workers
  // whose draft cores add none to the target's.
  void size_forward_threads();
  // Whether the next target forward would run on the draft's threads too (the conditions above).
  bool draft_threads_free() const;
  // The cores a lent forward of pinned workers runs on: the target's and the draft's, sorted. Empty
  // when the workers are not pinned, or when the draft's cores add none to the target's.
  static std::vector<int> lent_cores(const std::vector<int>& target, const std::vector<int>& draft);
  void fail(SequenceState& s, const std::string& message);
  void finish_row(SequenceState& s);
  // Drops finished rows; their draft sequences are released lazily (send_to_draft, flush_draft_releases).
  void release_finished();
  // Every message to the draft goes through here: the releases of finished sequences go first, in the
  // same message stream. They are not sent on their own while rounds run: a message wakes the idle
  // draft, and a round that starts before it has handled the message finds the draft busy and runs on
  // the target's threads only (measured: serving 4 clients on 2 cores, the round after each finish ran
  // on one thread, 125 ms instead of 80).
  void send_to_draft(ToDraft msg);
  // Sends the pending releases now (the runtime is idle: nothing to slow down).
  void flush_draft_releases();
  void publish_metrics();

  std::shared_ptr<Model> target_;
  RuntimeConfig config_;
  Mode mode_;
  int64_t vocab_;
  int64_t max_context_;
  std::vector<int32_t> eos_;
  RequestInbox& inbox_;
  UpdateBoard& board_;
  DraftTransport* transport_;
  std::function<bool()> draft_idle_;
  int32_t forward_threads_;         // what set_target_threads last set (target_threads at start)
  std::vector<int> lent_cores_;     // lent_cores(target_cores, draft_cores)
  RemoteEntries* remote_;           // the transport, when its draft keeps sampled entries' q rows (a wire)
  FanoutSchedule schedule_;
  BackupPolicy backup_;
  SpeculationGovernor governor_;   // whether a round of a batch speculates at all (backup "auto")
  bool catching_up_ = false;       // a catch-up was sent and the draft has not handled it yet
  Clock::time_point catch_up_sent_;  // when, and how many tokens behind its rows were
  int64_t catch_up_tokens_ = 0;
  double draft_read_per_s_ = 0;      // tokens/s the draft read in its last catch-up (0: none measured)
  double prompt_read_per_s_ = 0;     // tokens/s of the target's last batched prefill
  double lone_plain_round_s_ = 0;    // the last plain round of a lone request on lent threads
  std::shared_ptr<SpeculationCache> cache_, q_cache_;
  std::thread thread_;
  std::vector<std::unique_ptr<SequenceState>> active_;
  std::vector<int64_t> to_release_in_draft_;
  uint64_t round_ = 0;
  bool tree_pending_ = false;       // a kSpeculate for round_ is at the draft
  bool tree_done_ = false;          // its kTreeDone has arrived
  Clock::time_point verify_start_[2], verify_end_[2];  // by round parity, for the overlap of late trees
  bool draft_failed_ = false;
  uint64_t draft_epoch_ = 0;        // the transport's epoch the sequences were last synced with
  std::string draft_failure_;  // the draft worker's error, repeated to requests refused later under strict
  RuntimeMetrics metrics_;          // target thread only
  mutable std::mutex snapshot_mu_;
  RuntimeMetrics snapshot_;
};

}  // namespace saguaro
