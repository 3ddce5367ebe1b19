#pragma once
// Whether a round speculates at all (docs/algorithm.md §3, "backing off"). On a compute-bound target a
// K+1-token verification of every row of a large batch can cost more than the tokens it adds, so
// plain batched decoding (every row verifies only its pending token) is faster. With backup "auto",
// from a batch of two on, the governor measures the committed tokens per second of plain rounds, then of
// speculating ones (a first speculating round slower than plain ends that warm-up; the order is reversed
// where a smaller batch measured speculation clearly faster), for each batch size and runs the faster, re-measuring the slower one now and then (less
// often while it stays the slower, and only as often as the last probe's measured cost allows), so a
// change of load or acceptance is followed. A batch size larger
// than one where plain rounds measured faster starts plain and never probes speculation itself: it
// follows the smaller size's verdict (follows_plain_below). One larger than a size where speculation won
// by less than kLargerBatchMargin starts plain and measures speculation at its first probe; so does a
// large one with nothing measured
// below it (kColdPlainBucket), unless the target's forward times say that verifying K+1 tokens per row
// costs little more than one (a latency-bound target): then it probes right after its plain warm-up.
// A smaller batch size entered from one where plain rounds measured faster (a dip under load, while
// requests finish and others join) warms speculation up only once it has lasted kWarmRounds rounds in a
// row; without such a verdict above (a cold engine, short requests of every batch size) it warms up as
// any other. Batch 1 speculates (the mode was chosen for it), except in such a dip: when the batch
// falls to one right after rounds at a size where plain measured faster, its first kWarmRounds rounds
// run plain (a wave of
// requests that finished together is followed by the next wave's first request alone, the others a
// round later; speculating for it made SSD's first tokens of each wave wait for the draft's prefill
// and a round on the target's own cores: 0.5 s against AR's 0.26 s serving 4 clients).
// Exactness is untouched: a plain round is an exact AR step. Not thread-safe: the target worker owns it.
#include <cstdint>
#include <map>
#include <utility>

namespace saguaro {

class SpeculationGovernor {
 public:
  // k: the draft tokens per row of a speculating round (its verification runs k + 1 rows per row).
  explicit SpeculationGovernor(bool enabled, int32_t k = 1) : enabled_(enabled), k_(k) {}
  // Off (backups jit and fast, or ar): every round of a speculative mode speculates.
  bool enabled() const { return enabled_; }

  // What the governor decided for one round: the batch size it decided for and whether to speculate.
  // The round's observation is counted for that same batch size, whatever happens to its rows in
  // between (rows that fail or finish while their speculations are supplied leave the round smaller
  // than decided, possibly in another bucket, whose arms would otherwise get measurements of rounds
  // they never chose).
  struct Decision {
    int64_t batch = 1;
    bool speculate = true;
    bool measuring = false;  // the arm chosen is the slower (or unmeasured) one: a warm-up's or probe's round
  };

  // The decision for the next round of a batch of `batch` rows.
  Decision decide(int64_t batch);
  // The round decided by `decision` committed `tokens` in `seconds`.
  void observe(const Decision& decision, int64_t tokens, double seconds);
  // The round `decision` chose to speculate runs plain instead, while the draft catches up on rows far
  // behind (draft_catch_up.cpp): the next decision at that batch size speculates, so the speculation the
  // decision was to measure is measured once the draft is ready. Without it a cold batch's probe was
  // spent on the catch-up alone, and the next came kProbeEvery * 4 rounds later, its catch-up again:
  // serving 16 clients, 18 catch-ups on one core and no speculating round measured at 16 rows.
  void postpone(const Decision& decision);
  // A round ran plain while the draft caught up for the postponed decision, committing `tokens` in
  // `seconds`: what it took beyond the plain rate (its target ran without the draft's lent threads)
  // counts to that probe's cost, which kProbeBudget bounds.
  void observe_catch_up(int64_t tokens, double seconds);
  // A target forward (a prefill or a round's verification) of `rows` token rows took `seconds`.
  void observe_forward(int64_t rows, double seconds);
  // The predicted time of a forward of `rows` rows over `base` rows' (linear between the nearest
  // measured row counts); 0 when no forward of more than `base` rows was measured.
  double predicted_cost_ratio(int64_t base, int64_t rows) const;

  // Whether rounds of this batch size run plain for now: plain rounds measured faster at this size, or
  // at a smaller one where this size is unmeasured, or speculation not measured here yet and plain rounds
  // first in its warm-up. The target then defers what only speculation needs: the draft's prefill of
  // new prompts, which on a shared machine slows the target's rounds (SSD's target prefill runs on its
  // own cores only while the draft prefills).
  bool backing_off(int64_t batch) const;
  int64_t plain_rounds() const { return plain_rounds_; }
  // The measured committed tokens/s of speculating and plain rounds at this batch size (0: not yet).
  double rate(int64_t batch, bool speculated) const;

  static constexpr int kWarmRounds = 3;     // rounds measured per arm before choosing, and per probe (a
                                            // speculating round slower than plain ends either at once)
  static constexpr int kProbeEvery = 24;    // rounds of the faster arm between probes of the slower, times
                                            // how many times faster it is (at most 4), times the backoff
  // A probe also waits until the bucket has run long enough that the last probe's measured cost (what
  // its rounds lost against the faster arm's rate) is at most this fraction of the time since then
  // (times the backoff): on SSD's shared cores a probe of speculation after a plain stretch has the
  // draft catch up on every sequence first, and cost ~1 s (a dozen plain rounds) serving 4 clients,
  // so probing every few dozen rounds cost 20% of the time.
  static constexpr double kProbeBudget = 0.02;
  static constexpr int kMaxProbeBackoff = 8;  // a probe that leaves the faster arm the faster doubles the
                                              // interval to the next, up to this factor; one that finds
                                              // the other arm faster resets it (a probe of the slower arm
                                              // costs its difference: under steady load that is the
                                              // governor's whole cost against the faster arm alone)
  static constexpr double kDecay = 0.8;     // weight of the past in each arm's rate
  // A batch larger than a measured one starts plain unless speculation was at least this much faster
  // there: verifying K+1 tokens per row gets relatively dearer as the batch grows (a target turns
  // compute-bound), so a narrow win shrinks or turns into a loss, and warming speculation up at a large
  // batch costs the most expensive rounds there are. (Serving the default pair on 2 cores: speculation
  // won by 5-8% at 4 clients and lost 6-7% at 16, where its warm-up and probes ran.)
  static constexpr double kLargerBatchMargin = 1.2;
  // From this bucket (batches of 5-8 rows) up, a batch size with no smaller one measured starts plain
  // and measures a single speculating round at its first probe (after kProbeEvery * 4 plain rounds);
  // speculation warms up further only if that round was not slower. A cold burst of 16 clients on the
  // default pair (2 cores) had spent its first rounds warming speculation up at 16 rows, ~3x a plain
  // round each: SSD 0.80x AR; with one speculating round after 3 plain ones, 0.75x AR once plain
  // rounds ran on all cores (bench/results/serve-load-default-pair-alternated-c16-cold-all-cores).
  static constexpr int64_t kColdPlainBucket = 8;
  // A cold batch probes speculation at once where its verification (k + 1 rows per row) is predicted
  // at most this many times a plain round: a latency-bound target, where speculation pays from the start.
  static constexpr double kCheapVerification = 1.5;

 private:
  struct Arm {
    double tokens = 0, seconds = 0;  // decayed sums
    double last_rate = 0;            // the last round's own rate
    int rounds = 0;
    double rate() const { return seconds > 0 ? tokens / seconds : 0.0; }
  };
  struct Bucket {
    Arm speculating, plain;
    int since_probe = 0;
    int probing = 0;  // rounds left of a probe of the slower arm
    int backoff = 1;  // the probe interval's factor (1, 2, 4, ... kMaxProbeBackoff)
    int streak = 0;   // decisions in a row for this bucket, the current one included
    bool dip = false; // entered (this streak) from a larger bucket where plain measured faster
    double since_probe_s = 0;  // seconds of this bucket's rounds since its last probe began
    double probe_cost_s = 0;   // the last run of measuring rounds: seconds beyond the other arm's rate
    bool in_measuring_run = false;  // the last observed round was a measuring one
    bool probe_open = false;           // a probe ran and its verdict is not taken yet
    bool probed_from_speculating = false;  // the faster arm when the probe began
  };
  static int64_t bucket_of(int64_t batch);  // 2, 3-4, 5-8, ... (powers of two)
  bool speculate(int64_t batch);
  const Bucket* measured_below(int64_t bucket) const;  // the nearest smaller bucket with a verdict (both arms measured)
  bool plain_faster_below(int64_t bucket) const;  // the nearest smaller measured bucket's verdict
  bool speculation_favoured_below(int64_t bucket) const;  // ... speculation won there by kLargerBatchMargin
  // Plain rounds measured faster at the nearest smaller measured batch and this batch's verification is
  // not cheap: this batch never probes speculation itself (its verification of K+1 tokens per row is only
  // relatively dearer than there) and follows the smaller batch, whose own probes find a change of
  // acceptance. Serving 16 clients on the default pair (2 cores), a probe at 16 rows had the draft catch
  // up on 16 sequences and build their trees on its one core: 2-3 s of a 15 s level, SSD 0.85x AR.
  bool follows_plain_below(int64_t bucket, int64_t batch) const;
  bool starts_plain(int64_t bucket) const;        // an unmeasured bucket's first rounds run plain
  static bool speculation_judged(const Bucket& k);  // speculation's warm-up is over (or cut short)
  static bool lasted(const Bucket& k) { return k.streak > kWarmRounds; }  // not a transient batch size
  // plain rounds measured faster here (or, unmeasured, at the nearest smaller size by the margin)
  bool measured_backing_off(int64_t bucket) const;
  // A round's time beyond what `other` would have taken for its tokens, added to the current run of
  // measuring rounds (or starting one): that run is the probe's cost. False where `other` is unmeasured.
  static bool charge_probe(Bucket& k, const Arm& other, int64_t tokens, double seconds);
  static bool probe_affordable(const Bucket& k) {  // kProbeBudget holds for a probe now
    return k.since_probe_s * kProbeBudget >= k.probe_cost_s * k.backoff;
  }

  bool cheap_verification(int64_t batch) const;  // kCheapVerification holds for this batch size

  bool enabled_;
  int32_t k_;
  std::map<int64_t, Bucket> buckets_;
  std::map<int64_t, std::pair<int64_t, double>> forwards_;  // by bucket of rows: the last (rows, seconds)
  int64_t plain_rounds_ = 0;
  int64_t last_bucket_ = 0;  // the bucket of the last decision (1: batch 1), for the streaks
  int64_t postponed_ = 0;    // the bucket whose decision to speculate waits for a catch-up (0: none)
  bool lone_dip_ = false;    // batch 1 came right after a size where plain measured faster
  int lone_streak_ = 0;      // batch-1 decisions in a row
};

}  // namespace saguaro
