#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "saguaro/ngram_proposer.hpp"
#include "saguaro/philox.hpp"

using saguaro::ngram_propose;
using saguaro::ngram_propose_detailed;
using V = std::vector<int32_t>;

TEST(NgramProposer, ProposesTokensAfterTheMatch) {
  const V ctx = {1, 2, 3, 4, 9, 1, 2, 3};
  EXPECT_EQ(ngram_propose(ctx, 2, 10, 0, 0), (V{4, 9}));
  const auto d = ngram_propose_detailed(ctx, 2, 10, 0, 0);
  EXPECT_EQ(d.matched_ngram, 3);
}

TEST(NgramProposer, UsesTheMostRecentOccurrence) {
  const V ctx = {5, 1, 7, 0, 5, 1, 8, 0, 5, 1};
  EXPECT_EQ(ngram_propose(ctx, 2, 10, 0, 0, /*max_ngram=*/2), (V{8, 0}));
}

TEST(NgramProposer, PrefersTheLongestNgram) {
  // "1 2" (2-gram) occurred before 9; the 1-gram "2" occurred more recently before 8.
  const V ctx = {1, 2, 9, 3, 2, 8, 1, 2};
  EXPECT_EQ(ngram_propose(ctx, 1, 10, 0, 0, 3, 1), (V{9}));
  EXPECT_EQ(ngram_propose(ctx, 1, 10, 0, 0, 1, 1), (V{8}));
  EXPECT_EQ(ngram_propose_detailed(ctx, 1, 10, 0, 0, 3, 1).matched_ngram, 2);
}

TEST(NgramProposer, RepeatingPatternContinuesIntoItsOwnProposal) {
  const V ctx = {7, 8, 7, 8};
  EXPECT_EQ(ngram_propose(ctx, 5, 10, 0, 0), (V{7, 8, 7, 8, 7}));
  const V run = {4, 4, 4};
  EXPECT_EQ(ngram_propose(run, 4, 10, 0, 0), (V{4, 4, 4, 4}));
}

TEST(NgramProposer, RandomFillIsKeyedByAbsolutePosition) {
  const V ctx = {1, 2, 3};  // no repeated n-gram
  const int64_t vocab = 1000;
  const auto d = ngram_propose_detailed(ctx, 4, vocab, 1234, 7);
  EXPECT_EQ(d.matched_ngram, 0);
  ASSERT_EQ(d.tokens.size(), 4u);
  for (int64_t t = 0; t < 4; ++t) {
    const double u = saguaro::keyed_uniform(1234, 7, 3 + t, saguaro::kFastBackup);
    EXPECT_EQ(d.tokens[static_cast<size_t>(t)], static_cast<int32_t>(std::floor(u * vocab)));
  }
  EXPECT_EQ(ngram_propose(ctx, 4, vocab, 1234, 7), d.tokens) << "deterministic";
  EXPECT_NE(ngram_propose(ctx, 4, vocab, 1235, 7), d.tokens) << "depends on the seed";
  EXPECT_NE(ngram_propose(ctx, 4, vocab, 1234, 8), d.tokens) << "depends on the stream";
  // The same absolute positions give the same tokens whatever the (unmatched) context holds.
  EXPECT_EQ(ngram_propose(V{9, 8, 7}, 4, vocab, 1234, 7), d.tokens);
}

TEST(NgramProposer, RandomFillCoversTheVocabulary) {
  const int64_t vocab = 10;
  std::vector<int> counts(vocab, 0);
  const auto toks = ngram_propose(V{}, 5000, vocab, 99, 0);
  for (int32_t t : toks) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, vocab);
    ++counts[static_cast<size_t>(t)];
  }
  for (int c : counts) {
    EXPECT_GT(c, 400);  // expected 500 each
    EXPECT_LT(c, 600);
  }
}

TEST(NgramProposer, ShortContextsAndMinNgram) {
  EXPECT_EQ(ngram_propose_detailed(V{}, 2, 5, 0, 0).matched_ngram, 0);
  EXPECT_EQ(ngram_propose_detailed(V{3}, 2, 5, 0, 0).matched_ngram, 0);
  EXPECT_EQ(ngram_propose(V{3, 3}, 2, 5, 0, 0), (V{3, 3}));
  EXPECT_EQ(ngram_propose_detailed(V{3, 3}, 2, 5, 0, 0, 3, 2).matched_ngram, 0) << "a 2-gram needs 3 tokens";
  EXPECT_TRUE(ngram_propose(V{1, 1, 1}, 0, 5, 0, 0).empty());
}

TEST(NgramProposer, RejectsBadArguments) {
  EXPECT_THROW(ngram_propose(V{1}, -1, 5, 0, 0), std::invalid_argument);
  EXPECT_THROW(ngram_propose(V{1}, 2, 0, 0, 0), std::invalid_argument);
  EXPECT_THROW(ngram_propose(V{1}, 2, 5, 0, 0, 3, 0), std::invalid_argument);
  EXPECT_THROW(ngram_propose(V{1}, 2, 5, 0, 0, 1, 2), std::invalid_argument);
  EXPECT_THROW(ngram_propose(V{1, 5}, 2, 5, 0, 0), std::invalid_argument);
  EXPECT_THROW(ngram_propose(V{-1}, 2, 5, 0, 0), std::invalid_argument);
}
