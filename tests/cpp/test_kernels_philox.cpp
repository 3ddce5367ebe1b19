#include <gtest/gtest.h>

#include <set>

#include "saguaro/philox.hpp"

using namespace saguaro;

// Known-answer vectors published with Random123 (kat_vectors, philox4x32_10).
TEST(KernelsPhilox, KnownAnswerZeros) {
  const auto r = philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
}

TEST(KernelsPhilox, KnownAnswerOnes) {
  const uint32_t f = 0xffffffffu;
  const auto r = philox4x32_10(f, f, f, f, f, f);
  EXPECT_EQ(r.v[0], 0x408f276du);
  EXPECT_EQ(r.v[1], 0x41c83b0eu);
  EXPECT_EQ(r.v[2], 0xa20bc7c6u);
  EXPECT_EQ(r.v[3], 0x6d5451fdu);
}

TEST(KernelsPhilox, KnownAnswerPi) {
  const auto r = philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(r.v[0], 0xd16cfe09u);
  EXPECT_EQ(r.v[1], 0x94fdccebu);
  EXPECT_EQ(r.v[2], 0x5001e420u);
  EXPECT_EQ(r.v[3], 0x24126ea1u);
}

TEST(KernelsPhilox, KeyedUniformLayout) {
  // key = (lo32 seed, hi32 seed), counter = (lo32 pos, hi32 pos, purpose, lo32 stream).
  const uint64_t seed = 0x0123456789abcdefull, stream = 0xdeadbeef00000007ull;
  const int64_t pos = 0x0000000500000009ll;
  const auto r = philox4x32_10(9u, 5u, kResidual, 7u, 0x89abcdefu, 0x01234567u);
  const uint64_t bits = ((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1]) >> 11;
  EXPECT_EQ(keyed_uniform(seed, stream, pos, kResidual), static_cast<double>(bits) / 9007199254740992.0);
  EXPECT_EQ(keyed_uniform(0, 0, 0, 0), static_cast<double>(((0x6627e8d5ull << 32) | 0xe169c58dull) >> 11) * 0x1p-53);
}

TEST(KernelsPhilox, UniformRangeAndIndependenceOfInputs) {
  std::set<double> seen;
  double sum = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double u = keyed_uniform(42, 0, i, kAccept);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    seen.insert(u);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
  EXPECT_NEAR(sum / n, 0.5, 0.01);  // sd of the mean = 0.0020
  EXPECT_NE(keyed_uniform(1, 0, 3, kAccept), keyed_uniform(1, 0, 3, kResidual));
  EXPECT_NE(keyed_uniform(1, 0, 3, kAccept), keyed_uniform(1, 1, 3, kAccept));
  EXPECT_NE(keyed_uniform(1, 0, 3, kAccept), keyed_uniform(2, 0, 3, kAccept));
  EXPECT_EQ(keyed_uniform(1, 0, 3, kAccept), keyed_uniform(1, 0, 3, kAccept));
}
