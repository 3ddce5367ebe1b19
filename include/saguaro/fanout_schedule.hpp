#pragma once
// Fan-out: how the budget of M branches per sequence is spread over the K+1 positions where the bonus
// token can land (docs/algorithm.md §2.2).
//
// Geometric (ours: computed from LIVE estimates): with per-position acceptance a and miss-rate exponent
// r (1 - hit(F) ≈ c·F^(-r)), maximising the expected hit rate under sum F_j = M gives
//     F_j ∝ a^(j/(1+r))                          for j < K
//     F_K ∝ a^(K/(1+r)) · (1 - a)^(-1/(1+r))     (the all-accepted atom)
// rounded to integers: positions whose share is below 1 are raised to 1 (and the rest rescaled over
// what is left), then largest remainder. When M < K+1 the M most likely positions get 1 and the others
// 0. a is clamped to [kMinAcceptance, kMaxAcceptance] (a = 1 would give F_K an infinite weight).
//
// Live estimates:
// * acceptance: per-position acceptance of a capped geometric, i.e. accepted draft tokens / ratio tests
//   (a row with accepted < num_draft made accepted + 1 tests, a fully accepted row num_draft tests) —
//   NOT accepted / num_draft, which underestimates a badly (a = 0.5, K = 4 gives ~0.23). Both counts are
//   exponential moving averages (decay kAcceptanceDecay per observed row), started at the configured
//   initial acceptance, kept separately for rounds whose speculation came from a backup (after a miss).
// * r: from observe_hit, per-fan-out hit frequencies; weighted least squares of log(miss rate) against
//   log F (with an intercept: the constant c does not change the optimal split), r = -slope clamped to
//   [kMinR, kMaxR]; refitted every kRefitEvery observations once at least two fan-out values have
//   kMinObservationsPerFanout observations each.
//
// Thread-safety: every method may be called from any thread (a small internal mutex; the schedule is
// read once per round, not on a per-token path).

#include <cstdint>
#include <mutex>
#include <vector>

namespace saguaro {

enum class FanoutKind { kGeometric, kUniform, kManual };

struct FanoutConfig {
  FanoutKind kind = FanoutKind::kGeometric;
  int32_t budget = 4;                      // M (default: see RuntimeConfig::k)
  double r = 1.0;                          // initial miss-rate exponent
  std::vector<int32_t> manual;             // F_0..F_K for kManual
  std::vector<int32_t> manual_after_miss;  // optional, for rounds whose speculation came from a backup
  double initial_acceptance = 0.7;
};

class FanoutSchedule {
 public:
  static constexpr double kMinAcceptance = 1e-3;
  static constexpr double kMaxAcceptance = 0.999;
  static constexpr double kMinR = 0.1;
  static constexpr double kMaxR = 10.0;
  static constexpr double kAcceptanceDecay = 0.02;
  static constexpr int64_t kRefitEvery = 64;
  static constexpr int64_t kMinObservationsPerFanout = 32;

  // std::invalid_argument: k < 1; budget < 1 (geometric/uniform); r not finite or <= 0;
  // initial_acceptance outside [0, 1]; for kManual a list whose length is not k+1 or with a negative
  // entry (manual_after_miss may be empty: then manual is used after a miss too).
  FanoutSchedule(int32_t k, FanoutConfig config);
  // Copies take the source's estimates under its lock (the mutex itself is not copied).
  FanoutSchedule(const FanoutSchedule& other);
  FanoutSchedule& operator=(const FanoutSchedule& other);

  // F_0..F_K (size k+1), each >= 1 for geometric/uniform, summing to the budget (when budget >= k+1).
  // Manual lists are returned as given (their sum is the budget they imply).
  std::vector<int32_t> fanout(bool after_miss) const;

  // live estimates: one call per verified row. num_draft 0 is ignored.
  // std::invalid_argument unless 0 <= accepted <= num_draft.
  void observe_acceptance(int32_t accepted, int32_t num_draft, bool after_miss);
  // One call per verified row whose outcome landed at `position` (= accepted count) where the fan-out
  // was fanout_at_position; hit = the bonus token was among the cached candidates. Refits r.
  // fanout 0 is ignored (a certain miss says nothing about r). std::invalid_argument on negatives.
  void observe_hit(int32_t position, int32_t fanout_at_position, bool hit);

  double acceptance(bool after_miss) const;
  double r() const;

  // Added to the contract:
  int32_t k() const { return k_; }
  FanoutKind kind() const { return config_.kind; }
  int32_t budget() const { return config_.budget; }
  int64_t hit_observations() const;  // observe_hit calls with fanout >= 1

  // The closed form above; std::invalid_argument for k < 1, budget < 0, a NaN, r not finite or <= 0.
  static std::vector<int32_t> geometric(double a, double r, int32_t k, int32_t budget);
  // Added: budget split evenly, the remainder to the lowest positions (M < K+1: 1 to the first M).
  static std::vector<int32_t> uniform(int32_t k, int32_t budget);

 private:
  struct AcceptanceEstimate {
    double successes = 0.0;  // EMA of accepted draft tokens per row
    double trials = 0.0;     // EMA of ratio tests per row
    double value() const;
  };
  void refit_locked();

  int32_t k_;
  FanoutConfig config_;
  mutable std::mutex mutex_;
  AcceptanceEstimate normal_;
  AcceptanceEstimate after_miss_;
  double r_;
  std::vector<int64_t> hits_by_fanout_;    // index F
  std::vector<int64_t> trials_by_fanout_;  // index F
  int64_t hit_observations_ = 0;
  int64_t since_refit_ = 0;
};

}  // namespace saguaro
