#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "saguaro/fanout_schedule.hpp"

using saguaro::FanoutConfig;
using saguaro::FanoutKind;
using saguaro::FanoutSchedule;
using V = std::vector<int32_t>;

namespace {
int32_t sum(const V& v) { return std::accumulate(v.begin(), v.end(), 0); }

// A capped geometric number of accepted drafts: each of k drafts accepted with probability a until the
// first rejection.
int32_t sample_accepted(std::mt19937_64& rng, double a, int32_t k) {
  std::bernoulli_distribution accept(a);
  int32_t n = 0;
  while (n < k && accept(rng)) ++n;
  return n;
}
}  // namespace

// Hand-computed from the closed form: a = 0.5, r = 1, K = 2, M = 10:
// weights 1, 0.5^0.5, 0.5^1 * 0.5^-0.5 → shares 4.14, 2.93, 2.93 → floors 4,2,2 + largest remainders.
TEST(FanoutSchedule, GeometricMatchesClosedFormExamples) {
  EXPECT_EQ(FanoutSchedule::geometric(0.5, 1.0, 2, 10), (V{4, 3, 3}));
  // a = 0.8, r = 1, K = 4, M = 20: shares 4.13, 3.70, 3.30, 2.96, 5.91.
  EXPECT_EQ(FanoutSchedule::geometric(0.8, 1.0, 4, 20), (V{4, 4, 3, 3, 6}));
  // K = 1: a = 0.5 weighs both positions equally; a = 0.9 gives the all-accepted atom 3x the weight.
  EXPECT_EQ(FanoutSchedule::geometric(0.5, 1.0, 1, 4), (V{2, 2}));
  EXPECT_EQ(FanoutSchedule::geometric(0.9, 1.0, 1, 4), (V{1, 3}));
}

TEST(FanoutSchedule, SharesBelowOneAreRaisedToOne) {
  // a = 0.01: almost everything at position 0, yet every position keeps one branch.
  EXPECT_EQ(FanoutSchedule::geometric(0.01, 0.5, 4, 6), (V{2, 1, 1, 1, 1}));
  EXPECT_EQ(FanoutSchedule::geometric(0.0, 1.0, 4, 9), (V{5, 1, 1, 1, 1}));
}

TEST(FanoutSchedule, AcceptanceNearOneIsCapped) {
  const V at_one = FanoutSchedule::geometric(1.0, 1.0, 4, 12);
  EXPECT_EQ(at_one, (V{1, 1, 1, 1, 8}));  // a capped at 0.999: F_K weight 0.999^2 / 0.001^0.5 ≈ 31.5
  EXPECT_EQ(FanoutSchedule::geometric(1.5, 1.0, 4, 12), at_one);
}

TEST(FanoutSchedule, SumsToBudgetAndAtLeastOneEverywhere) {
  for (int32_t k : {1, 2, 3, 4, 8}) {
    for (double a : {0.0, 0.05, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0}) {
      for (double r : {0.1, 0.5, 1.0, 3.0, 10.0}) {
        for (int32_t m = k + 1; m <= 4 * (k + 1) + 3; ++m) {
          const V f = FanoutSchedule::geometric(a, r, k, m);
          ASSERT_EQ(f.size(), static_cast<size_t>(k) + 1);
          ASSERT_EQ(sum(f), m) << "k=" << k << " a=" << a << " r=" << r;
          for (int32_t x : f) ASSERT_GE(x, 1) << "k=" << k << " a=" << a << " r=" << r << " m=" << m;
        }
      }
    }
  }
}

TEST(FanoutSchedule, MonotoneInAcceptance) {
  // Higher acceptance moves branches from "early rejection" (F_0) to "all accepted" (F_K).
  for (int32_t k : {1, 2, 4}) {
    for (int32_t m : {k + 1, 2 * (k + 1), 12, 30}) {
      if (m < k + 1) continue;
      V prev = FanoutSchedule::geometric(0.0, 1.0, k, m);
      for (double a = 0.02; a <= 1.0001; a += 0.02) {
        const V f = FanoutSchedule::geometric(a, 1.0, k, m);
        EXPECT_LE(f[0], prev[0]) << "F_0 rose at a=" << a << " k=" << k << " m=" << m;
        EXPECT_GE(f[k], prev[k]) << "F_K fell at a=" << a << " k=" << k << " m=" << m;
        prev = f;
      }
    }
  }
}

TEST(FanoutSchedule, BudgetBelowPositionsGoesToMostLikely) {
  // a = 0.9, K = 4: weights 1, .95, .90, .85 and F_K 2.56 → the atom and position 0 get the two branches.
  EXPECT_EQ(FanoutSchedule::geometric(0.9, 1.0, 4, 2), (V{1, 0, 0, 0, 1}));
  EXPECT_EQ(FanoutSchedule::geometric(0.3, 1.0, 4, 3), (V{1, 1, 1, 0, 0}));
  EXPECT_EQ(FanoutSchedule::geometric(0.5, 1.0, 3, 0), (V{0, 0, 0, 0}));
}

TEST(FanoutSchedule, GeometricRejectsBadArguments) {
  EXPECT_THROW(FanoutSchedule::geometric(0.5, 1.0, 0, 6), std::invalid_argument);
  EXPECT_THROW(FanoutSchedule::geometric(0.5, 0.0, 2, 6), std::invalid_argument);
  EXPECT_THROW(FanoutSchedule::geometric(0.5, std::numeric_limits<double>::infinity(), 2, 6), std::invalid_argument);
  EXPECT_THROW(FanoutSchedule::geometric(std::nan(""), 1.0, 2, 6), std::invalid_argument);
  EXPECT_THROW(FanoutSchedule::geometric(0.5, 1.0, 2, -1), std::invalid_argument);
}

TEST(FanoutSchedule, Uniform) {
  EXPECT_EQ(FanoutSchedule::uniform(3, 6), (V{2, 2, 1, 1}));
  EXPECT_EQ(FanoutSchedule::uniform(3, 8), (V{2, 2, 2, 2}));
  EXPECT_EQ(FanoutSchedule::uniform(3, 2), (V{1, 1, 0, 0}));
  FanoutConfig c;
  c.kind = FanoutKind::kUniform;
  c.budget = 7;
  FanoutSchedule s(2, c);
  EXPECT_EQ(s.fanout(false), (V{3, 2, 2}));
  EXPECT_EQ(s.fanout(true), (V{3, 2, 2}));
}

TEST(FanoutSchedule, ManualListsAreValidatedAndUsed) {
  FanoutConfig c;
  c.kind = FanoutKind::kManual;
  c.manual = {3, 2, 1};
  FanoutSchedule s(2, c);
  EXPECT_EQ(s.fanout(false), (V{3, 2, 1}));
  EXPECT_EQ(s.fanout(true), (V{3, 2, 1})) << "no after-miss list: the manual list is used";
  c.manual_after_miss = {1, 1, 4};
  FanoutSchedule s2(2, c);
  EXPECT_EQ(s2.fanout(true), (V{1, 1, 4}));
  EXPECT_EQ(s2.fanout(false), (V{3, 2, 1}));

  FanoutConfig bad = c;
  bad.manual = {3, 2};
  EXPECT_THROW(FanoutSchedule(2, bad), std::invalid_argument);
  bad = c;
  bad.manual = {3, -1, 1};
  EXPECT_THROW(FanoutSchedule(2, bad), std::invalid_argument);
  bad = c;
  bad.manual_after_miss = {1, 1, 1, 1};
  EXPECT_THROW(FanoutSchedule(2, bad), std::invalid_argument);
  bad = c;
  bad.manual.clear();
  EXPECT_THROW(FanoutSchedule(2, bad), std::invalid_argument);
}

TEST(FanoutSchedule, ConstructorRejectsBadConfig) {
  FanoutConfig c;
  EXPECT_THROW(FanoutSchedule(0, c), std::invalid_argument);
  c.budget = 0;
  EXPECT_THROW(FanoutSchedule(2, c), std::invalid_argument);
  c = FanoutConfig{};
  c.r = -1;
  EXPECT_THROW(FanoutSchedule(2, c), std::invalid_argument);
  c = FanoutConfig{};
  c.initial_acceptance = 1.5;
  EXPECT_THROW(FanoutSchedule(2, c), std::invalid_argument);
  c.initial_acceptance = std::nan("");
  EXPECT_THROW(FanoutSchedule(2, c), std::invalid_argument);
}

TEST(FanoutSchedule, InitialEstimatesAndGeometricFromThem) {
  FanoutConfig c;
  c.budget = 10;
  c.initial_acceptance = 0.5;
  FanoutSchedule s(2, c);
  EXPECT_DOUBLE_EQ(s.acceptance(false), 0.5);
  EXPECT_DOUBLE_EQ(s.acceptance(true), 0.5);
  EXPECT_DOUBLE_EQ(s.r(), 1.0);
  EXPECT_EQ(s.fanout(false), (V{4, 3, 3}));
}

TEST(FanoutSchedule, AcceptanceEstimateRecoversPlantedPerPositionRate) {
  for (double planted : {0.3, 0.6, 0.85}) {
    FanoutConfig c;
    c.initial_acceptance = 0.7;
    FanoutSchedule s(4, c);
    std::mt19937_64 rng(42);
    double mean_estimate = 0, naive = 0;
    const int burn_in = 500, rows = 4000;
    for (int i = 0; i < burn_in + rows; ++i) {
      const int32_t acc = sample_accepted(rng, planted, 4);
      s.observe_acceptance(acc, 4, false);
      if (i >= burn_in) {
        mean_estimate += s.acceptance(false) / rows;
        naive += acc / 4.0 / rows;
      }
    }
    EXPECT_NEAR(mean_estimate, planted, 0.03) << "planted a = " << planted;
    // The naive accepted / num_draft is far off: the estimator above is not that one.
    if (planted < 0.8) {
      EXPECT_GT(std::abs(naive - planted), 0.1);
    }
    EXPECT_DOUBLE_EQ(s.acceptance(true), 0.7) << "after-miss estimate is separate";
  }
}

TEST(FanoutSchedule, AfterMissEstimateDrivesAfterMissFanout) {
  FanoutConfig c;
  c.budget = 12;
  FanoutSchedule s(4, c);
  for (int i = 0; i < 400; ++i) {
    s.observe_acceptance(4, 4, false);   // everything accepted
    s.observe_acceptance(0, 4, true);    // backup speculations rejected at once
  }
  EXPECT_GT(s.acceptance(false), 0.95);
  EXPECT_LT(s.acceptance(true), 0.05);
  EXPECT_EQ(s.fanout(false), FanoutSchedule::geometric(s.acceptance(false), s.r(), 4, 12));
  EXPECT_EQ(s.fanout(true), FanoutSchedule::geometric(s.acceptance(true), s.r(), 4, 12));
  EXPECT_GT(s.fanout(false)[4], s.fanout(true)[4]);
  EXPECT_GT(s.fanout(true)[0], s.fanout(false)[0]);
  s.observe_acceptance(0, 0, false);  // ignored
  EXPECT_THROW(s.observe_acceptance(3, 2, false), std::invalid_argument);
  EXPECT_THROW(s.observe_acceptance(-1, 2, false), std::invalid_argument);
}

namespace {
// Hit data with miss(F) = c * F^-r, cycling F over `fanouts`.
double fit_r(double planted_r, double c, const std::vector<int32_t>& fanouts, int rows, uint64_t seed) {
  FanoutConfig cfg;
  cfg.r = 1.0;
  FanoutSchedule s(4, cfg);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < rows; ++i) {
    const int32_t f = fanouts[static_cast<size_t>(i) % fanouts.size()];
    const double miss = std::min(1.0, c * std::pow(f, -planted_r));
    s.observe_hit(i % 5, f, u(rng) >= miss);
  }
  return s.r();
}
}  // namespace

TEST(FanoutSchedule, FitOfRRecoversPlantedExponent) {
  EXPECT_NEAR(fit_r(2.0, 0.5, {1, 2, 3, 4}, 20000, 1), 2.0, 0.2);
  EXPECT_NEAR(fit_r(0.5, 0.8, {1, 2, 3, 4, 6}, 20000, 2), 0.5, 0.1);
  EXPECT_NEAR(fit_r(1.2, 0.6, {1, 3, 5}, 20000, 3), 1.2, 0.15);
}

TEST(FanoutSchedule, FitNeedsEnoughDataAndIsClamped) {
  FanoutConfig cfg;
  cfg.r = 1.5;
  FanoutSchedule s(2, cfg);
  // One fan-out value only: the slope is not identifiable, r stays.
  for (int i = 0; i < 1000; ++i) s.observe_hit(0, 3, i % 2 == 0);
  EXPECT_DOUBLE_EQ(s.r(), 1.5);
  EXPECT_EQ(s.hit_observations(), 1000);
  s.observe_hit(0, 0, false);  // fan-out 0 says nothing about r
  EXPECT_EQ(s.hit_observations(), 1000);
  EXPECT_THROW(s.observe_hit(-1, 2, true), std::invalid_argument);
  EXPECT_THROW(s.observe_hit(0, -2, true), std::invalid_argument);
  // A second fan-out with MORE misses (nonsense data) → slope positive → r clamps at its minimum.
  for (int i = 0; i < 1000; ++i) s.observe_hit(1, 6, i % 10 == 0);
  EXPECT_DOUBLE_EQ(s.r(), FanoutSchedule::kMinR);
  // Very steep data clamps at the maximum.
  FanoutSchedule steep(2, cfg);
  for (int i = 0; i < 2000; ++i) {
    steep.observe_hit(0, 1, false);
    steep.observe_hit(0, 2, true);
  }
  EXPECT_DOUBLE_EQ(steep.r(), FanoutSchedule::kMaxR);
}

TEST(FanoutSchedule, CopiesCarryTheEstimates) {
  FanoutConfig c;
  FanoutSchedule s(3, c);
  for (int i = 0; i < 100; ++i) s.observe_acceptance(3, 3, false);
  FanoutSchedule copy(s);
  EXPECT_DOUBLE_EQ(copy.acceptance(false), s.acceptance(false));
  FanoutSchedule other(1, c);
  other = s;
  EXPECT_EQ(other.k(), 3);
  EXPECT_EQ(other.fanout(false), s.fanout(false));
}
