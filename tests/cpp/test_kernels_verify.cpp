#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "saguaro/philox.hpp"
#include "saguaro/sample.hpp"
#include "saguaro/verify.hpp"
#include "test_kernels_util.hpp"

using namespace saguaro;

namespace {

struct Batch {
  int64_t B, K, V;
  std::vector<float> logits, q;
  std::vector<int32_t> draft, num_draft;
  std::vector<uint8_t> det;
  std::vector<ProcessParams> params;
  std::vector<RowKey> keys;
  std::vector<int64_t> pos;
  std::vector<int32_t> accepted, bonus;
  Batch(int64_t b, int64_t k, int64_t v)
      : B(b), K(k), V(v), logits(b * (k + 1) * v, 0.f), q(b * k * v, 0.f), draft(b * k, 0), num_draft(b, int32_t(k)),
        det(b, 0), params(b), keys(b), pos(b, 10), accepted(b, -7), bonus(b, -7) {}
  float* row(int64_t b, int64_t i) { return logits.data() + (b * (K + 1) + i) * V; }
  float* qrow(int64_t b, int64_t i) { return q.data() + (b * K + i) * V; }
  void run(bool with_q = true) {
    verify_chain_cpu(logits.data(), draft.data(), with_q ? q.data() : nullptr, num_draft.data(), det.data(),
                     params.data(), keys.data(), pos.data(), B, K, V, accepted.data(), bonus.data());
  }
  std::string error(bool with_q = true) {
    try {
      run(with_q);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  }
};

// The contract's rule for one sampled row, written out step by step.
std::pair<int32_t, int32_t> expected_sampled(Batch& t, int64_t b) {
  ProcessParams tp = t.params[b];
  tp.saguaro_c = 1.f;
  tp.saguaro_topn = 0;
  std::vector<float> p(t.V);
  const RowKey k = t.keys[b];
  for (int32_t i = 0; i < t.num_draft[b]; ++i) {
    process_probs_cpu(t.row(b, i), &tp, 1, t.V, p.data());
    const int32_t x = t.draft[b * t.K + i];
    const double u = keyed_uniform(k.seed, k.stream, t.pos[b] + i, kAccept);
    const double r = keyed_uniform(k.seed, k.stream, t.pos[b] + i, kResidual);
    std::vector<float> res(t.V);
    if (t.det[b]) {
      if (u < p[x]) continue;
      res = p;
      res[x] = 0.f;
    } else {
      if (u * t.qrow(b, i)[x] < p[x]) continue;
      for (int64_t v = 0; v < t.V; ++v) res[v] = std::max(p[v] - t.qrow(b, i)[v], 0.f);
    }
    int32_t tok = sample_inverse_cdf(res.data(), t.V, r);
    if (tok < 0) tok = sample_inverse_cdf(p.data(), t.V, r);
    return {i, tok};
  }
  const int32_t n = t.num_draft[b];
  process_probs_cpu(t.row(b, n), &tp, 1, t.V, p.data());
  return {n, sample_inverse_cdf(p.data(), t.V, keyed_uniform(k.seed, k.stream, t.pos[b] + n, kResidual))};
}

}  // namespace

TEST(KernelsVerify, GreedyKOneVTwo) {
  Batch t(2, 1, 2);
  for (int b = 0; b < 2; ++b) {
    t.params[b].temperature = 0.f;
    t.row(b, 0)[1] = 1.f;  // argmax 1 at position 0
    t.row(b, 1)[0] = 5.f;  // argmax 0 after it
  }
  t.draft = {1, 0};
  t.run(false);
  EXPECT_EQ(t.accepted, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(t.bonus, (std::vector<int32_t>{0, 1}));
}

TEST(KernelsVerify, GreedyAllEqualLogitsTieGoesToLowestId) {
  Batch t(1, 3, 5);
  t.params[0].temperature = 0.f;
  t.draft = {0, 0, 1};
  t.run(false);
  EXPECT_EQ(t.accepted[0], 2);
  EXPECT_EQ(t.bonus[0], 0);
}

TEST(KernelsVerify, MixedGreedyAndSampledRowsFollowTheContract) {
  std::mt19937 rng(3);
  const int64_t B = 64, K = 3, V = 11;
  Batch t(B, K, V);
  for (auto& x : t.logits) x = std::normal_distribution<float>(0.f, 2.f)(rng);
  for (int64_t b = 0; b < B; ++b) {
    t.params[b].temperature = (b % 4 == 0) ? 0.f : 0.5f + 0.25f * (b % 3);
    t.params[b].top_k = (b % 5 == 1) ? 4 : 0;
    t.params[b].top_p = (b % 7 == 2) ? 0.6f : 1.f;
    t.params[b].saguaro_c = 0.f;  // ignored by verification
    t.params[b].saguaro_topn = 3;
    t.det[b] = (b % 6 == 5);
    t.num_draft[b] = int32_t(b % (K + 1));
    t.keys[b] = RowKey{uint64_t(1000 + b), uint64_t(b % 2)};
    t.pos[b] = 5 + b;
    for (int64_t i = 0; i < K; ++i) {
      auto ql = saguaro::testing_util::random_logits(rng, V);
      ProcessParams qp;
      process_probs_cpu(ql.data(), &qp, 1, V, t.qrow(b, i));
      t.draft[b * K + i] = sample_inverse_cdf(t.qrow(b, i), V, std::uniform_real_distribution<double>()(rng));
    }
  }
  t.run();
  for (int64_t b = 0; b < B; ++b) {
    if (t.params[b].temperature == 0.f) {
      int32_t i = 0;
      for (; i < t.num_draft[b]; ++i) {
        const auto order = saguaro::testing_util::sorted_ids(t.row(b, i), V);
        if (t.draft[b * K + i] != order[0]) break;
      }
      EXPECT_EQ(t.accepted[b], i);
      EXPECT_EQ(t.bonus[b], saguaro::testing_util::sorted_ids(t.row(b, i), V)[0]);
    } else {
      const auto want = expected_sampled(t, b);
      EXPECT_EQ(t.accepted[b], want.first) << "row " << b;
      EXPECT_EQ(t.bonus[b], want.second) << "row " << b;
    }
  }
}

TEST(KernelsVerify, BatchCompositionDoesNotChangeARow) {
  std::mt19937 rng(5);
  Batch big(8, 2, 6);
  for (auto& x : big.logits) x = std::normal_distribution<float>()(rng);
  for (auto& x : big.q) x = 1.f / 6.f;
  for (int64_t b = 0; b < 8; ++b) big.keys[b].seed = 77;  // same seed in every slot
  big.run();
  for (int64_t b = 0; b < 8; ++b) {
    Batch one(1, 2, 6);
    std::copy(big.row(b, 0), big.row(b, 0) + 3 * 6, one.logits.begin());
    std::copy(big.qrow(b, 0), big.qrow(b, 0) + 2 * 6, one.q.begin());
    one.draft = {big.draft[b * 2], big.draft[b * 2 + 1]};
    one.keys[0].seed = 77;
    one.run();
    EXPECT_EQ(one.accepted[0], big.accepted[b]);
    EXPECT_EQ(one.bonus[0], big.bonus[b]);
  }
}

TEST(KernelsVerify, ProposalEqualToTargetIsAlwaysAccepted) {
  Batch t(50, 3, 7);
  std::mt19937 rng(9);
  for (auto& x : t.logits) x = std::normal_distribution<float>()(rng);
  for (int64_t b = 0; b < 50; ++b) {
    t.keys[b].seed = uint64_t(b);
    for (int64_t i = 0; i < 3; ++i) {
      process_probs_cpu(t.row(b, i), &t.params[b], 1, 7, t.qrow(b, i));
      t.draft[b * 3 + i] = int32_t(rng() % 7);
    }
  }
  // q = p exactly: u * q(x) < p(x) for every u < 1 whenever p(x) > 0
  t.run();
  for (int64_t b = 0; b < 50; ++b) EXPECT_EQ(t.accepted[b], 3);
}

TEST(KernelsVerify, DeterministicProposalWithZeroTargetMassIsRejected) {
  Batch t(20, 1, 4);
  for (int64_t b = 0; b < 20; ++b) {
    t.row(b, 0)[2] = -std::numeric_limits<float>::infinity();
    t.draft[b] = 2;
    t.det[b] = 1;
    t.keys[b].seed = uint64_t(b);
  }
  t.run(false);
  for (int64_t b = 0; b < 20; ++b) {
    EXPECT_EQ(t.accepted[b], 0);
    EXPECT_NE(t.bonus[b], 2);
  }
}

TEST(KernelsVerify, TopKOneTargetMakesSampledRowsDeterministic) {
  Batch t(10, 2, 5);
  for (int64_t b = 0; b < 10; ++b) {
    t.params[b].top_k = 1;
    for (int i = 0; i < 3; ++i) t.row(b, i)[(i + 1) % 5] = 2.f;
    for (int i = 0; i < 2; ++i) std::fill(t.qrow(b, i), t.qrow(b, i) + 5, 0.2f);
    t.draft[b * 2] = 1;
    t.draft[b * 2 + 1] = (b % 2) ? 2 : 4;
    t.keys[b].seed = uint64_t(b);
  }
  t.run();
  for (int64_t b = 0; b < 10; ++b) {
    EXPECT_EQ(t.accepted[b], (b % 2) ? 2 : 1);
    EXPECT_EQ(t.bonus[b], (b % 2) ? 3 : 2);
  }
}

TEST(KernelsVerify, NaNInAUsedRowThrowsButNotInAnUnusedRow) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Batch t(2, 2, 3);
  t.params[1].temperature = 0.f;
  t.row(1, 0)[0] = 1.f;
  t.draft = {0, 0, 2, 2};  // row 1 rejects at position 0
  t.row(1, 2)[1] = nan;    // never read
  std::fill(t.q.begin(), t.q.end(), 1.f / 3.f);
  EXPECT_EQ(t.error(), "");
  t.row(0, 1)[2] = nan;
  t.keys[0].seed = 1;
  // row 0 may stop at position 0; make position 0 certain to accept: p = q = one-hot
  t.row(0, 0)[0] = 50.f;
  std::fill(t.qrow(0, 0), t.qrow(0, 0) + 3, 0.f);
  t.qrow(0, 0)[0] = 1.f;
  const std::string e = t.error();
  EXPECT_NE(e.find("row 0 position 1 contain NaN"), std::string::npos) << e;
  Batch g(1, 1, 2);
  g.row(0, 0)[0] = -std::numeric_limits<float>::infinity();
  g.row(0, 0)[1] = -std::numeric_limits<float>::infinity();
  EXPECT_NE(g.error().find("no finite value"), std::string::npos);
}

TEST(KernelsVerify, BadArgumentsThrow) {
  Batch t(1, 2, 4);
  std::fill(t.q.begin(), t.q.end(), 0.25f);
  t.num_draft[0] = 3;
  EXPECT_NE(t.error().find("num_draft[0] = 3"), std::string::npos);
  t.num_draft[0] = 2;
  t.draft[1] = 4;
  EXPECT_NE(t.error().find("draft_tokens[0][1] = 4"), std::string::npos);
  t.draft[1] = 0;
  EXPECT_NE(t.error(false).find("q is null"), std::string::npos);
  t.params[0].top_p = 0.f;
  EXPECT_NE(t.error().find("top_p"), std::string::npos);
  t.params[0].top_p = 1.f;
  t.q[0] = std::nanf("");
  t.draft[0] = 0;
  t.keys[0].seed = 0;
  EXPECT_NE(t.error().find("is not a probability"), std::string::npos);
}

TEST(KernelsVerify, NoDraftsDrawsTheBonusFromTheFirstRow) {
  Batch t(1, 2, 4);
  t.num_draft[0] = 0;
  t.row(0, 0)[3] = 100.f;
  t.run(false);
  EXPECT_EQ(t.accepted[0], 0);
  EXPECT_EQ(t.bonus[0], 3);
}
