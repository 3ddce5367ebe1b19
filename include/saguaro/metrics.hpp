#pragma once
// What the runtime measures, per request and in aggregate (docs/algorithm.md §5 terms).
#include <cstdint>
#include <string>
#include <vector>

namespace saguaro {

struct RequestMetrics {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t rounds = 0;                               // verification rounds this request took part in
  std::vector<int64_t> accepted_histogram;          // [K+1]: rounds that accepted k drafts
  std::vector<int64_t> proposed_per_position;       // [K]: drafts proposed at position i
  std::vector<int64_t> accepted_per_position;       // [K]: ... of which accepted
  std::vector<int64_t> lookups_per_position;        // [K+1]: cache lookups for outcomes with k = j
  std::vector<int64_t> hits_per_position;           // [K+1]: ... of which hit
  int64_t backups_jit = 0;
  int64_t backups_fast = 0;
  int64_t speculations_from_cache = 0;
  double prefill_s = 0;
  double time_to_first_token_s = 0;                 // submit → first token committed
  double total_s = 0;                               // submit → finished

  RequestMetrics() = default;
  explicit RequestMetrics(int32_t k);
  void record_verification(int32_t num_draft, int32_t accepted);
  void record_lookup(int32_t accepted, bool hit);
  void merge(const RequestMetrics& other);          // sums counters (used for the aggregate)
};

struct RuntimeMetrics {
  RequestMetrics totals;             // sum over finished and running requests
  int64_t requests_submitted = 0;
  int64_t requests_finished = 0;
  int64_t requests_failed = 0;
  int64_t rounds = 0;                // batched rounds
  int64_t round_rows = 0;            // sum of batch sizes over rounds
  double round_s = 0;                // wall time of rounds (target critical path)
  double target_verify_s = 0;        // target forward + verification kernel
  double target_prefill_s = 0;
  double draft_tree_s = 0;           // draft trunk + fork + tree decode
  double draft_tree_hidden_s = 0;    // ... of which overlapped the target's verification
  double draft_chain_s = 0;          // draft chain decoding (sd drafting, jit backups): never hidden
  double wait_for_tree_s = 0;        // target idle waiting for the tree (cache policy "wait")
  double backup_s = 0;               // target idle waiting for backups
  int64_t trees = 0;
  int64_t trees_abandoned = 0;
  int64_t cache_publish_failures = 0;
  int64_t draft_failures = 0;
  int64_t draft_reconnects = 0;     // a remote draft came back (a new epoch) and speculation resumed
  int64_t target_failures = 0;
  int64_t backup_critical_batch = 0; // current auto choice (0 until known)
  int64_t plain_rounds = 0;          // rounds of sd/ssd that did not speculate (the governor backed off)
  int64_t forwards_on_draft_threads = 0;  // ssd target forwards that ran on the idle draft's threads too
  int64_t draft_prefills_deferred = 0;  // ssd prompts not sent to the draft at admission (backing off,
                                        // or the draft lending its threads to their prefill)
  int64_t draft_catch_up_rows = 0;      // ssd rows sent to the draft to catch up in the background
  int64_t catch_up_rounds = 0;          // ssd rounds run plain while the draft caught up
  int64_t rounds_without_draft = 0;     // ssd rounds of a lone request run plain because its draft
                                        // could not catch up before it ends (or its plain pace was
                                        // not measured yet)
  double remote_q_wait_s = 0;        // target idle waiting for a remote draft's q rows (remote_q.hpp)
  int64_t remote_q_fallbacks = 0;    // cache hits verified as deterministic: their q rows never came
  std::vector<int32_t> fanout;       // current F_0..F_K
  double fanout_acceptance = 0;      // the schedule's live acceptance estimate
  std::string mode;                  // current mode ("ar" after a draft failure fallback)

  // draft work overlapped with verification / all draft work
  double hidden_fraction() const;
};

}  // namespace saguaro
