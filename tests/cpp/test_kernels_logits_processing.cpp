#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "saguaro/logits_processing.hpp"
#include "test_kernels_util.hpp"

using namespace saguaro;
using saguaro::testing_util::brute_process;

namespace {
const float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> run(const std::vector<float>& l, const ProcessParams& p) {
  std::vector<float> out(l.size());
  process_probs_cpu(l.data(), &p, 1, static_cast<int64_t>(l.size()), out.data());
  return out;
}

ProcessParams params(float t, int32_t k = 0, float p = 1.f, float c = 1.f, int32_t n = 0) {
  ProcessParams x;
  x.temperature = t;
  x.top_k = k;
  x.top_p = p;
  x.saguaro_c = c;
  x.saguaro_topn = n;
  return x;
}

std::string error_of(const std::vector<float>& l, int64_t rows, const ProcessParams& p) {
  std::vector<ProcessParams> ps(static_cast<size_t>(rows), p);
  std::vector<float> out(l.size());
  try {
    process_probs_cpu(l.data(), ps.data(), rows, static_cast<int64_t>(l.size()) / rows, out.data());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(KernelsProcess, GreedyOneHotLowestIdOnTies) {
  EXPECT_EQ(run({1.f, 3.f, 3.f, 2.f}, params(0.f)), (std::vector<float>{0.f, 1.f, 0.f, 0.f}));
  EXPECT_EQ(run({kNegInf, 0.f}, params(0.f, 0, 0.1f, 0.f, 1)), (std::vector<float>{0.f, 1.f}));
}

TEST(KernelsProcess, SoftmaxTwoTokens) {
  const auto p = run({0.f, std::log(3.f)}, params(1.f));
  EXPECT_NEAR(p[0], 0.25f, 1e-7);
  EXPECT_NEAR(p[1], 0.75f, 1e-7);
  const auto h = run({0.f, std::log(3.f)}, params(0.5f));  // temperature 0.5 squares the ratio
  EXPECT_NEAR(h[0], 0.1f, 1e-7);
  EXPECT_NEAR(h[1], 0.9f, 1e-7);
}

TEST(KernelsProcess, AllEqualLogitsAreUniformAndTopKTakesLowIds) {
  const std::vector<float> l(8, 2.5f);
  for (float x : run(l, params(1.f))) EXPECT_FLOAT_EQ(x, 0.125f);
  const auto k = run(l, params(1.f, 3));
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(k[i], i < 3 ? 1.f / 3.f : 0.f);
  const auto tp = run(l, params(1.f, 0, 0.3f));  // 0.125 * 3 >= 0.3: ids 0..2
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(tp[i], i < 3 ? 1.f / 3.f : 0.f);
}

TEST(KernelsProcess, TopKOneAndTinyTopPGiveArgmax) {
  const std::vector<float> l{0.3f, 2.f, 1.f, 2.f};
  EXPECT_EQ(run(l, params(1.f, 1)), (std::vector<float>{0.f, 1.f, 0.f, 0.f}));
  EXPECT_EQ(run(l, params(0.7f, 0, 1e-6f)), (std::vector<float>{0.f, 1.f, 0.f, 0.f}));
}

TEST(KernelsProcess, TopPKeepsSmallestPrefixOnRenormalisedTopK) {
  // probabilities 0.5, 0.3, 0.15, 0.05
  const std::vector<float> l{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  const auto a = run(l, params(1.f, 0, 0.75f));
  EXPECT_NEAR(a[0], 0.625f, 1e-6);
  EXPECT_NEAR(a[1], 0.375f, 1e-6);
  EXPECT_EQ(a[2], 0.f);
  // top-k 2 renormalises to 0.625 / 0.375, so top_p 0.6 keeps only the first
  EXPECT_EQ(run(l, params(1.f, 2, 0.6f)), (std::vector<float>{1.f, 0.f, 0.f, 0.f}));
}

TEST(KernelsProcess, NegativeInfinityIsZeroProbability) {
  const auto p = run({kNegInf, 1.f, kNegInf, 1.f}, params(1.f, 3));
  EXPECT_EQ(p, (std::vector<float>{0.f, 0.5f, 0.f, 0.5f}));
}

TEST(KernelsProcess, SaguaroScalesTopNAndFallsBackWhenMassVanishes) {
  const std::vector<float> l{0.f, 0.f, 0.f, 0.f};
  const auto s = run(l, params(1.f, 0, 1.f, 0.5f, 1));
  EXPECT_NEAR(s[0], 0.5 / 3.5, 1e-7);
  EXPECT_NEAR(s[1], 1 / 3.5, 1e-7);
  const auto z = run(l, params(1.f, 0, 1.f, 0.f, 2));
  EXPECT_EQ(z, (std::vector<float>{0.f, 0.f, 0.5f, 0.5f}));
  // C = 0 and the top-k leaves all the mass in the top-n: unscaled
  EXPECT_EQ(run({3.f, 1.f, 2.f}, params(1.f, 1, 1.f, 0.f, 2)), (std::vector<float>{1.f, 0.f, 0.f}));
}

TEST(KernelsProcess, MatchesBruteForceOnRandomRows) {
  std::mt19937 rng(7);
  const int64_t sizes[] = {2, 17, 300, 5000};
  for (int64_t V : sizes) {
    for (int trial = 0; trial < 40; ++trial) {
      auto l = saguaro::testing_util::random_logits(rng, V, trial % 2 ? 1.f : 4.f);
      if (trial % 5 == 0) l[rng() % V] = kNegInf;
      if (trial % 7 == 0) l[rng() % V] = l[0];  // a tie
      std::uniform_int_distribution<int> kd(0, static_cast<int>(std::min<int64_t>(V + 2, 200)));
      ProcessParams p = params(trial % 9 == 0 ? 0.f : 0.3f + (trial % 4) * 0.5f, trial % 3 ? kd(rng) : 0,
                               trial % 2 ? 0.05f + 0.9f * float(rng() % 1000) / 1000.f : 1.f,
                               trial % 4 == 1 ? float(rng() % 3) / 2.f : 1.f, static_cast<int32_t>(rng() % 90));
      const auto want = brute_process(l, p, true);
      const auto got = run(l, p);
      for (int64_t i = 0; i < V; ++i) ASSERT_EQ(got[i], want[i]) << "V=" << V << " trial=" << trial << " i=" << i;
    }
  }
}

TEST(KernelsProcess, TopPOfFlatVocabularyRowsMatchesBruteForce) {
  // Nuclei of thousands of tokens (far past the 64-logit fast path): the pairs sorted are only the
  // weights above the nucleus floor (row_primitives.cpp), and the result is the full sort's.
  std::mt19937 rng(11);
  const int64_t V = 151936;
  for (float top_p : {0.3f, 0.9f, 0.99f, 0.999f}) {
    auto l = saguaro::testing_util::random_logits(rng, V, 1.f);
    const ProcessParams p = params(0.7f, 0, top_p);
    const auto want = brute_process(l, p, true);
    const auto got = run(l, p);
    int64_t kept = 0;
    for (int64_t i = 0; i < V; ++i) {
      ASSERT_EQ(got[i], want[i]) << "top_p=" << top_p << " i=" << i;
      kept += got[i] > 0.f;
    }
    EXPECT_GT(kept, 64) << "top_p=" << top_p;
  }
}

TEST(KernelsProcess, BadRowsThrowNamingTheRow) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_of({0.f, 1.f, nan, 1.f}, 2, params(1.f)).find("row 1 contain NaN"), std::string::npos);
  EXPECT_NE(error_of({kNegInf, kNegInf}, 1, params(1.f)).find("no finite value"), std::string::npos);
  EXPECT_NE(error_of({kNegInf, kNegInf}, 1, params(0.f)).find("no finite value"), std::string::npos);
  EXPECT_NE(error_of({1.f, std::numeric_limits<float>::infinity()}, 1, params(1.f)).find("+inf"), std::string::npos);
}

TEST(KernelsProcess, BadParametersThrow) {
  const std::vector<float> l{0.f, 1.f};
  EXPECT_NE(error_of(l, 1, params(-1.f)).find("temperature"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(std::nanf(""))).find("temperature"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(1.f, -1)).find("top_k"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(1.f, 0, 0.f)).find("top_p"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(1.f, 0, 1.5f)).find("top_p"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(1.f, 0, 1.f, 1.5f)).find("saguaro_c"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(1.f, 0, 1.f, -0.1f)).find("saguaro_c"), std::string::npos);
  EXPECT_NE(error_of(l, 1, params(1.f, 0, 1.f, 1.f, -2)).find("saguaro_topn"), std::string::npos);
}
