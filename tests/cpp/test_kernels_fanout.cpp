#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "saguaro/fanout.hpp"
#include "test_kernels_util.hpp"

using namespace saguaro;

TEST(KernelsFanout, OrderTiesExclusionAndPadding) {
  const float ninf = -std::numeric_limits<float>::infinity();
  // B=1, K=1, V=5: L_0 and L_1
  const std::vector<float> logits{1.f, 3.f, 3.f, 2.f, ninf,   //
                                  0.f, 0.f, ninf, 5.f, 0.f};
  const std::vector<int32_t> drafted{1};
  const std::vector<int32_t> fanout{3, 5};
  std::vector<int32_t> out(2 * 5, 99);
  fanout_candidates_cpu(logits.data(), drafted.data(), fanout.data(), 1, 1, 5, 5, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{2, 3, 0, -1, -1,  //
                                       3, 0, 1, 4, -1}));
}

TEST(KernelsFanout, ZeroFanoutAndNegativeDraftedExcludeNothing) {
  const std::vector<float> logits{0.f, 1.f, 2.f, 3.f, 4.f, 5.f};
  const std::vector<int32_t> drafted{-1, 1};
  const std::vector<int32_t> fanout{2, 1, 0, 2};  // B=2, K=1, V=3
  std::vector<int32_t> out(8, 99);
  const std::vector<float> two_rows{0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 0.f, 1.f, 2.f, 3.f, 4.f, 5.f};
  fanout_candidates_cpu(two_rows.data(), drafted.data(), fanout.data(), 2, 1, 3, 2, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{2, 1, 2, -1, -1, -1, 2, 1}));
  std::vector<int32_t> out2(2, 99);
  const std::vector<int32_t> f2{2};
  fanout_candidates_cpu(logits.data(), drafted.data(), f2.data(), 1, 0, 3, 2, out2.data());  // K = 0
  EXPECT_EQ(out2, (std::vector<int32_t>{2, 1}));
}

TEST(KernelsFanout, MatchesFullSortOnRandomRows) {
  std::mt19937 rng(11);
  const int64_t B = 3, K = 2, V = 4000, Fmax = 150;
  std::vector<float> logits(B * (K + 1) * V);
  for (auto& x : logits) x = float(int(rng() % 200)) / 10.f;  // many ties
  std::vector<int32_t> drafted(B * K), fanout(B * (K + 1));
  for (auto& d : drafted) d = int32_t(rng() % V);
  for (size_t i = 0; i < fanout.size(); ++i) fanout[i] = (i % 3 == 0) ? 150 : int32_t(rng() % 70);
  std::vector<int32_t> out(B * (K + 1) * Fmax);
  fanout_candidates_cpu(logits.data(), drafted.data(), fanout.data(), B, K, V, Fmax, out.data());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j <= K; ++j) {
      const float* row = logits.data() + (b * (K + 1) + j) * V;
      auto order = saguaro::testing_util::sorted_ids(row, V);
      if (j < K) order.erase(std::find(order.begin(), order.end(), drafted[b * K + j]));
      for (int64_t f = 0; f < Fmax; ++f) {
        const int32_t want = f < fanout[b * (K + 1) + j] ? order[f] : -1;
        ASSERT_EQ(out[(b * (K + 1) + j) * Fmax + f], want) << b << " " << j << " " << f;
      }
    }
}

TEST(KernelsFanout, BadArgumentsThrow) {
  const std::vector<float> logits{0.f, 1.f, 2.f, std::nanf("")};
  const std::vector<int32_t> drafted{0};
  std::vector<int32_t> out(4);
  auto err = [&](std::vector<int32_t> fanout, std::vector<int32_t> d, int64_t fmax) -> std::string {
    try {
      fanout_candidates_cpu(logits.data(), d.data(), fanout.data(), 1, 1, 2, fmax, out.data());
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(err({3, 1}, {0}, 2).find("fanout[0][0] = 3"), std::string::npos);
  EXPECT_NE(err({-1, 1}, {0}, 2).find("fanout[0][0] = -1"), std::string::npos);
  EXPECT_NE(err({1, 1}, {2}, 2).find("drafted[0][0] = 2"), std::string::npos);
  EXPECT_NE(err({1, 1}, {0}, 2).find("row 0 position 1 contain NaN"), std::string::npos);
}
