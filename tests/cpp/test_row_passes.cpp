// The whole-row passes (cpp/kernels/row_passes.cpp) and their fp64 exp (exp_f64.hpp): every CPU path
// this machine has gives the scalar path's bits, and the scalar path is the softmax numerators within
// an ulp of libm's exp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "exp_f64.hpp"
#include "row_primitives.hpp"

namespace saguaro {
namespace {

const float kInf = std::numeric_limits<float>::infinity();

// Distance in representable doubles between two positive finite values.
int64_t ulps(double a, double b) {
  int64_t ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  return ia > ib ? ia - ib : ib - ia;
}

std::vector<CpuIsa> paths() {
  std::vector<CpuIsa> p{CpuIsa::kScalar};
  if (cpu_isa_supported() >= CpuIsa::kAvx2) p.push_back(CpuIsa::kAvx2);
  if (cpu_isa_supported() >= CpuIsa::kAvx512) p.push_back(CpuIsa::kAvx512);
  return p;
}

std::vector<float> random_row(int64_t vocab, uint32_t seed, bool with_neg_inf) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 3.f);
  std::vector<float> l(static_cast<size_t>(vocab));
  for (auto& v : l) v = n(rng);
  if (with_neg_inf)
    for (int64_t i = 3; i < vocab; i += 7) l[static_cast<size_t>(i)] = -kInf;
  return l;
}

TEST(ExpF64, WithinOneUlpOfLibmOverTheWeightsRange) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> x(-708.7, 0.0), small(-1.0, 0.0);
  int64_t worst = 0;
  for (int i = 0; i < 400000; ++i) {
    const double v = i % 2 ? x(rng) : small(rng);
    worst = std::max(worst, ulps(exp_f64::exp_ref(v), std::exp(v)));
  }
  // the reduction's edges: r = +-ln2/2, and n = -1022 (the smallest normal power)
  for (double v : {0.0, -0.34657359027997264, -0.3465735902799727, -1.0397207708399179, -708.0, -708.39})
    worst = std::max(worst, ulps(exp_f64::exp_ref(v), std::exp(v)));
  EXPECT_LE(worst, 1);
  EXPECT_EQ(exp_f64::exp_ref(0.0), 1.0);
}

TEST(ExpF64, ZeroBelowTheNormalsAndForMinusInfinity) {
  EXPECT_EQ(exp_f64::exp_ref(-709.0), 0.0);
  EXPECT_EQ(exp_f64::exp_ref(-1e6), 0.0);
  EXPECT_EQ(exp_f64::exp_ref(-std::numeric_limits<double>::infinity()), 0.0);
  EXPECT_GE(exp_f64::exp_ref(-708.3), std::numeric_limits<double>::min());
}

TEST(RowPasses, EveryPathGivesTheScalarBits) {
  for (int64_t vocab : {1, 7, 8, 9, 17, 37, 1000, 151936})
    for (bool neg_inf : {false, true})
      for (double t : {0.3, 0.7, 1.0, 2.5}) {
        const std::vector<float> l = random_row(vocab, static_cast<uint32_t>(vocab * 3 + neg_inf), neg_inf);
        const detail::RowScan ref = detail::scan_row(l.data(), vocab, CpuIsa::kScalar);
        std::vector<double> w_ref(l.size()), w(l.size());
        const double sum_ref =
            detail::temperature_weights(l.data(), vocab, ref.max, t, w_ref.data(), CpuIsa::kScalar);
        std::vector<float> p_ref(l.size()), p(l.size());
        detail::normalise(w_ref.data(), vocab, sum_ref, p_ref.data(), CpuIsa::kScalar);
        for (CpuIsa isa : paths()) {
          SCOPED_TRACE(std::string(cpu_isa_name(isa)) + " vocab " + std::to_string(vocab) + " t " + std::to_string(t));
          const detail::RowScan s = detail::scan_row(l.data(), vocab, isa);
          EXPECT_EQ(s.max, ref.max);
          EXPECT_EQ(s.argmax, ref.argmax);
          EXPECT_EQ(s.finite, ref.finite);
          EXPECT_FALSE(s.nan || s.pos_inf);
          const double sum = detail::temperature_weights(l.data(), vocab, ref.max, t, w.data(), isa);
          EXPECT_EQ(std::memcmp(w.data(), w_ref.data(), w.size() * 8), 0);
          EXPECT_EQ(sum, sum_ref);
          EXPECT_EQ(detail::lane_sum(w.data(), vocab, isa), sum_ref);
          detail::normalise(w_ref.data(), vocab, sum_ref, p.data(), isa);
          EXPECT_EQ(std::memcmp(p.data(), p_ref.data(), p.size() * 4), 0);
        }
      }
}

TEST(RowPasses, WeightsAreTheSoftmaxNumeratorsAndTheirSum) {
  const int64_t vocab = 151936;
  const std::vector<float> l = random_row(vocab, 5, true);
  for (CpuIsa isa : paths()) {
    const detail::RowScan s = detail::scan_row(l.data(), vocab, isa);
    std::vector<double> w(l.size());
    const double sum = detail::temperature_weights(l.data(), vocab, s.max, 0.7, w.data(), isa);
    long double exact = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      const float v = l[static_cast<size_t>(i)];
      if (v == -kInf) {
        EXPECT_EQ(w[static_cast<size_t>(i)], 0.0);
        continue;
      }
      const double e = std::exp((static_cast<double>(v) - s.max) / 0.7);
      worst = std::max(worst, ulps(w[static_cast<size_t>(i)], e));
      exact += e;
    }
    EXPECT_LE(worst, 1) << cpu_isa_name(isa);
    EXPECT_NEAR(sum, static_cast<double>(exact), 1e-13 * static_cast<double>(exact)) << cpu_isa_name(isa);
    EXPECT_EQ(w[static_cast<size_t>(s.argmax)], 1.0);
  }
}

TEST(RowPasses, ScanFindsTheFirstMaximumAndTheBadValuesAnywhere) {
  for (CpuIsa isa : paths()) {
    SCOPED_TRACE(cpu_isa_name(isa));
    for (int64_t vocab : {5, 16, 40, 1001}) {
      for (int64_t at : {int64_t{0}, vocab / 2, vocab - 1}) {
        // the maximum at `at` and again at `other`: the lower id is the argmax
        const int64_t other = at == vocab - 1 ? 1 : vocab - 1;
        std::vector<float> l(static_cast<size_t>(vocab), -1.f);
        l[static_cast<size_t>(at)] = l[static_cast<size_t>(other)] = 2.f;
        const detail::RowScan s = detail::scan_row(l.data(), vocab, isa);
        EXPECT_EQ(s.max, 2.f);
        EXPECT_EQ(s.argmax, static_cast<int32_t>(std::min(at, other)));
        EXPECT_EQ(s.finite, vocab);
        std::vector<float> bad = l;
        bad[static_cast<size_t>(at)] = std::nanf("");
        EXPECT_TRUE(detail::scan_row(bad.data(), vocab, isa).nan) << at;
        bad[static_cast<size_t>(at)] = kInf;
        EXPECT_TRUE(detail::scan_row(bad.data(), vocab, isa).pos_inf) << at;
        bad[static_cast<size_t>(at)] = -kInf;
        EXPECT_EQ(detail::scan_row(bad.data(), vocab, isa).finite, vocab - 1) << at;
      }
      const std::vector<float> none(static_cast<size_t>(vocab), -kInf);
      const detail::RowScan s = detail::scan_row(none.data(), vocab, isa);
      EXPECT_EQ(s.finite, 0);
      EXPECT_EQ(s.argmax, -1);
    }
  }
}

TEST(RowPasses, FirstAboveFindsTheSameIdOnEveryPath) {
  std::vector<float> l = random_row(1003, 9, true);
  l[500] = std::nanf("");  // NaN is never above
  for (CpuIsa isa : paths())
    for (float threshold : {-kInf, -1.f, 2.f, 5.f, 8.f, 1e9f})
      for (int64_t from : {0, 1, 17, 499, 500, 1000, 1003}) {
        int64_t want = from;
        while (want < 1003 && !(l[static_cast<size_t>(want)] > threshold)) ++want;
        EXPECT_EQ(detail::first_above(l.data(), from, 1003, threshold, isa), want)
            << cpu_isa_name(isa) << " threshold " << threshold << " from " << from;
      }
}

}  // namespace
}  // namespace saguaro
