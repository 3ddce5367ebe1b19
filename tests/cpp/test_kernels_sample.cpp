#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "saguaro/philox.hpp"
#include "saguaro/sample.hpp"
#include "test_kernels_util.hpp"

using namespace saguaro;

TEST(KernelsSample, InverseCdfRules) {
  const std::vector<float> p{0.f, 0.25f, 0.f, 0.5f, 0.25f, 0.f};
  EXPECT_EQ(sample_inverse_cdf(p.data(), 6, 0.0), 1);
  EXPECT_EQ(sample_inverse_cdf(p.data(), 6, 0.2499), 1);
  EXPECT_EQ(sample_inverse_cdf(p.data(), 6, 0.25), 3);  // strict: cumsum must exceed u * total
  EXPECT_EQ(sample_inverse_cdf(p.data(), 6, 0.75), 4);
  EXPECT_EQ(sample_inverse_cdf(p.data(), 6, 0.9999999999), 4);
  const std::vector<float> z(4, 0.f);
  EXPECT_EQ(sample_inverse_cdf(z.data(), 4, 0.5), -1);
  const std::vector<float> unnormalised{2.f, 2.f};  // total is the row's own sum
  EXPECT_EQ(sample_inverse_cdf(unnormalised.data(), 2, 0.6), 1);
}

TEST(KernelsSample, RowsMixGreedyAndSampledAndReturnTheirQ) {
  std::mt19937 rng(13);
  const int64_t N = 40, V = 50;
  std::vector<float> logits(N * V);
  for (auto& x : logits) x = std::normal_distribution<float>(0.f, 2.f)(rng);
  std::vector<ProcessParams> params(N);
  std::vector<RowKey> keys(N);
  std::vector<int64_t> pos(N);
  for (int64_t n = 0; n < N; ++n) {
    params[n].temperature = (n % 3 == 0) ? 0.f : 0.8f;
    params[n].top_k = (n % 4 == 1) ? 5 : 0;
    params[n].top_p = (n % 5 == 2) ? 0.5f : 1.f;
    params[n].saguaro_c = (n % 2) ? 0.25f : 1.f;
    params[n].saguaro_topn = 3;
    keys[n] = RowKey{uint64_t(n * 31), 2};
    pos[n] = 100 + n;
  }
  std::vector<float> probs(N * V), want(N * V);
  std::vector<int32_t> tokens(N);
  sample_rows_cpu(logits.data(), params.data(), keys.data(), pos.data(), N, V, probs.data(), tokens.data());
  process_probs_cpu(logits.data(), params.data(), N, V, want.data());
  EXPECT_EQ(probs, want);
  for (int64_t n = 0; n < N; ++n) {
    const float* row = probs.data() + n * V;
    EXPECT_EQ(tokens[n], sample_inverse_cdf(row, V, keyed_uniform(keys[n].seed, 2, 100 + n, kDraft)));
    EXPECT_GT(row[tokens[n]], 0.f);
    if (n % 3 == 0) EXPECT_EQ(tokens[n], saguaro::testing_util::sorted_ids(logits.data() + n * V, V)[0]);
  }
}

TEST(KernelsSample, NaNRowThrows) {
  std::vector<float> logits{0.f, 1.f, std::nanf(""), 0.f};
  std::vector<ProcessParams> params(2);
  std::vector<RowKey> keys(2);
  std::vector<int64_t> pos(2);
  std::vector<float> probs(4);
  std::vector<int32_t> tokens(2);
  try {
    sample_rows_cpu(logits.data(), params.data(), keys.data(), pos.data(), 2, 2, probs.data(), tokens.data());
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sample_rows: logits of row 1 contain NaN"), std::string::npos);
  }
}
