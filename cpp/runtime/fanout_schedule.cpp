#include "saguaro/fanout_schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace saguaro {
namespace {

void check_k(int32_t k, const char* where) {
  if (k < 1) throw std::invalid_argument(std::string(where) + ": k must be >= 1, got " + std::to_string(k));
}

void check_r(double r, const char* where) {
  if (!std::isfinite(r) || r <= 0.0) {
    throw std::invalid_argument(std::string(where) + ": r must be finite and > 0, got " + std::to_string(r));
  }
}

void check_manual(const std::vector<int32_t>& list, int32_t k, const char* name) {
  if (list.size() != static_cast<size_t>(k) + 1) {
    throw std::invalid_argument(std::string("FanoutSchedule: ") + name + " must list F_0..F_K (" +
                                std::to_string(k + 1) + " entries for k = " + std::to_string(k) + "), got " +
                                std::to_string(list.size()));
  }
  for (size_t j = 0; j < list.size(); ++j) {
    if (list[j] < 0) {
      throw std::invalid_argument(std::string("FanoutSchedule: ") + name + "[" + std::to_string(j) +
                                  "] is negative (" + std::to_string(list[j]) + "); fan-outs must be >= 0");
    }
  }
}

// x clearly above y: differences within rounding noise (equal weights computed two ways) are ties, and
// ties go to the lower position, so the result does not hinge on the last bit of a logarithm.
bool clearly_greater(double x, double y) { return x - y > 1e-9 * std::max(1.0, std::abs(y)); }

// Positions ordered most likely first (weight descending, ties lower position first).
std::vector<int32_t> by_weight(const std::vector<double>& w) {
  std::vector<int32_t> order(w.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return clearly_greater(w[x], w[y]); });
  return order;
}

// Integers summing to budget, each >= 1 (budget >= n), proportional to w: shares below 1 are raised to 1
// and the rest rescaled over the remaining budget, then largest remainder.
std::vector<int32_t> apportion(const std::vector<double>& w, int32_t budget) {
  const size_t n = w.size();
  std::vector<int32_t> out(n, 0);
  if (static_cast<int64_t>(budget) < static_cast<int64_t>(n)) {
    const std::vector<int32_t> order = by_weight(w);
    for (int32_t i = 0; i < budget; ++i) out[order[i]] = 1;
    return out;
  }
  std::vector<bool> pinned(n, false);
  std::vector<double> share(n, 0.0);
  for (;;) {
    double free_weight = 0.0;
    int64_t free_budget = budget;
    for (size_t j = 0; j < n; ++j) {
      if (pinned[j]) {
        --free_budget;
      } else {
        free_weight += w[j];
      }
    }
    bool changed = false;
    for (size_t j = 0; j < n; ++j) {
      if (pinned[j]) continue;
      share[j] = static_cast<double>(free_budget) * w[j] / free_weight;
      if (share[j] < 1.0) {
        pinned[j] = true;
        changed = true;
      }
    }
    if (!changed) break;
  }
  int64_t assigned = 0;
  for (size_t j = 0; j < n; ++j) {
    if (pinned[j]) share[j] = 1.0;
    // The epsilon keeps an exact integer share (e.g. 2.9999999999) from losing a unit to rounding.
    out[j] = std::max<int32_t>(1, static_cast<int32_t>(std::floor(share[j] + 1e-9)));
    assigned += out[j];
  }
  // Guard against the epsilon above rounding a total past the budget: take back from the least likely.
  for (int32_t i = static_cast<int32_t>(n) - 1; assigned > budget; i = i > 0 ? i - 1 : static_cast<int32_t>(n) - 1) {
    const int32_t j = by_weight(w)[i];
    if (out[j] > 1) {
      out[j] -= 1;
      assigned -= 1;
    }
  }
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
    const double fx = pinned[x] ? -1.0 : share[x] - out[x];
    const double fy = pinned[y] ? -1.0 : share[y] - out[y];
    if (clearly_greater(fx, fy)) return true;
    if (clearly_greater(fy, fx)) return false;
    return clearly_greater(w[x], w[y]);
  });
  for (int64_t left = budget - assigned, i = 0; left > 0; --left, ++i) out[order[i % n]] += 1;
  return out;
}

}  // namespace

double FanoutSchedule::AcceptanceEstimate::value() const {
  if (!(trials > 0.0)) return 0.0;
  return std::clamp(successes / trials, 0.0, 1.0);
}

FanoutSchedule::FanoutSchedule(int32_t k, FanoutConfig config) : k_(k), config_(std::move(config)) {
  check_k(k, "FanoutSchedule");
  check_r(config_.r, "FanoutSchedule");
  if (!(config_.initial_acceptance >= 0.0 && config_.initial_acceptance <= 1.0)) {
    throw std::invalid_argument("FanoutSchedule: initial_acceptance must be in [0, 1], got " +
                                std::to_string(config_.initial_acceptance));
  }
  if (config_.kind == FanoutKind::kManual) {
    check_manual(config_.manual, k, "manual");
    if (!config_.manual_after_miss.empty()) check_manual(config_.manual_after_miss, k, "manual_after_miss");
  } else if (config_.budget < 1) {
    throw std::invalid_argument("FanoutSchedule: budget (M, branches per sequence) must be >= 1, got " +
                                std::to_string(config_.budget));
  }
  normal_ = AcceptanceEstimate{config_.initial_acceptance, 1.0};
  after_miss_ = normal_;
  r_ = std::clamp(config_.r, kMinR, kMaxR);
}

FanoutSchedule::FanoutSchedule(const FanoutSchedule& other) : k_(other.k_) {
  std::lock_guard<std::mutex> lock(other.mutex_);
  config_ = other.config_;
  normal_ = other.normal_;
  after_miss_ = other.after_miss_;
  r_ = other.r_;
  hits_by_fanout_ = other.hits_by_fanout_;
  trials_by_fanout_ = other.trials_by_fanout_;
  hit_observations_ = other.hit_observations_;
  since_refit_ = other.since_refit_;
}

FanoutSchedule& FanoutSchedule::operator=(const FanoutSchedule& other) {
  if (this == &other) return *this;
  FanoutSchedule copy(other);
  std::lock_guard<std::mutex> lock(mutex_);
  k_ = copy.k_;
  config_ = std::move(copy.config_);
  normal_ = copy.normal_;
  after_miss_ = copy.after_miss_;
  r_ = copy.r_;
  hits_by_fanout_ = std::move(copy.hits_by_fanout_);
  trials_by_fanout_ = std::move(copy.trials_by_fanout_);
  hit_observations_ = copy.hit_observations_;
  since_refit_ = copy.since_refit_;
  return *this;
}

std::vector<int32_t> FanoutSchedule::geometric(double a, double r, int32_t k, int32_t budget) {
  check_k(k, "FanoutSchedule::geometric");
  check_r(r, "FanoutSchedule::geometric");
  if (std::isnan(a)) throw std::invalid_argument("FanoutSchedule::geometric: acceptance a is NaN");
  if (budget < 0) {
    throw std::invalid_argument("FanoutSchedule::geometric: budget must be >= 0, got " + std::to_string(budget));
  }
  a = std::clamp(a, kMinAcceptance, kMaxAcceptance);
  const double e = 1.0 / (1.0 + r);
  // Log weights, shifted by their maximum so nothing underflows for small a or large K.
  std::vector<double> logw(static_cast<size_t>(k) + 1);
  for (int32_t j = 0; j < k; ++j) logw[j] = j * e * std::log(a);
  logw[k] = k * e * std::log(a) - e * std::log1p(-a);
  const double top = *std::max_element(logw.begin(), logw.end());
  std::vector<double> w(logw.size());
  for (size_t j = 0; j < w.size(); ++j) w[j] = std::exp(logw[j] - top);
  return apportion(w, budget);
}

std::vector<int32_t> FanoutSchedule::uniform(int32_t k, int32_t budget) {
  check_k(k, "FanoutSchedule::uniform");
  if (budget < 0) {
    throw std::invalid_argument("FanoutSchedule::uniform: budget must be >= 0, got " + std::to_string(budget));
  }
  const int32_t n = k + 1;
  std::vector<int32_t> out(static_cast<size_t>(n), budget / n);
  for (int32_t j = 0; j < budget % n; ++j) out[j] += 1;
  return out;
}

std::vector<int32_t> FanoutSchedule::fanout(bool after_miss) const {
  switch (config_.kind) {
    case FanoutKind::kManual:
      return after_miss && !config_.manual_after_miss.empty() ? config_.manual_after_miss : config_.manual;
    case FanoutKind::kUniform:
      return uniform(k_, config_.budget);
    case FanoutKind::kGeometric:
    default: {
      double a = 0.0, r = 0.0;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        a = (after_miss ? after_miss_ : normal_).value();
        r = r_;
      }
      return geometric(a, r, k_, config_.budget);
    }
  }
}

void FanoutSchedule::observe_acceptance(int32_t accepted, int32_t num_draft, bool after_miss) {
  if (num_draft < 0 || accepted < 0 || accepted > num_draft) {
    throw std::invalid_argument("FanoutSchedule::observe_acceptance: need 0 <= accepted <= num_draft, got accepted " +
                                std::to_string(accepted) + ", num_draft " + std::to_string(num_draft));
  }
  if (num_draft == 0) return;
  const double successes = accepted;
  const double trials = accepted + (accepted < num_draft ? 1 : 0);
  std::lock_guard<std::mutex> lock(mutex_);
  AcceptanceEstimate& est = after_miss ? after_miss_ : normal_;
  est.successes += kAcceptanceDecay * (successes - est.successes);
  est.trials += kAcceptanceDecay * (trials - est.trials);
}

void FanoutSchedule::observe_hit(int32_t position, int32_t fanout_at_position, bool hit) {
  if (position < 0 || fanout_at_position < 0) {
    throw std::invalid_argument("FanoutSchedule::observe_hit: position and fan-out must be >= 0, got position " +
                                std::to_string(position) + ", fan-out " + std::to_string(fanout_at_position));
  }
  if (fanout_at_position == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const size_t f = static_cast<size_t>(fanout_at_position);
  if (trials_by_fanout_.size() <= f) {
    trials_by_fanout_.resize(f + 1, 0);
    hits_by_fanout_.resize(f + 1, 0);
  }
  trials_by_fanout_[f] += 1;
  hits_by_fanout_[f] += hit ? 1 : 0;
  hit_observations_ += 1;
  if (++since_refit_ >= kRefitEvery) {
    since_refit_ = 0;
    refit_locked();
  }
}

void FanoutSchedule::refit_locked() {
  // Weighted least squares of y = log(miss rate) on x = log F; the weight is the inverse of the
  // delta-method variance of log p̂, n p / (1 - p).
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  int points = 0;
  for (size_t f = 1; f < trials_by_fanout_.size(); ++f) {
    const int64_t n = trials_by_fanout_[f];
    if (n < kMinObservationsPerFanout) continue;
    const double misses = static_cast<double>(n - hits_by_fanout_[f]);
    const double p = (misses + 0.5) / (static_cast<double>(n) + 1.0);  // never 0 or 1
    const double weight = static_cast<double>(n) * p / (1.0 - p);
    const double x = std::log(static_cast<double>(f));
    const double y = std::log(p);
    sw += weight;
    sx += weight * x;
    sy += weight * y;
    sxx += weight * x * x;
    sxy += weight * x * y;
    ++points;
  }
  if (points < 2) return;
  const double denom = sw * sxx - sx * sx;
  if (!(denom > 0.0)) return;
  const double slope = (sw * sxy - sx * sy) / denom;
  if (!std::isfinite(slope)) return;
  r_ = std::clamp(-slope, kMinR, kMaxR);
}

double FanoutSchedule::acceptance(bool after_miss) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return (after_miss ? after_miss_ : normal_).value();
}

double FanoutSchedule::r() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return r_;
}

int64_t FanoutSchedule::hit_observations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return hit_observations_;
}

}  // namespace saguaro
