// Batch-invariant causal attention: accuracy against a double reference (grouped-query heads),
// bit-exact invariance over rows / threads / code paths, a planted change, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "saguaro/decode_attention.hpp"

namespace {

using saguaro::SmallGemmPath;

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = saguaro::float_to_bf16(d(g));
  return v;
}

struct Case {
  int64_t n, H, Hkv, D, start, cap;
  std::vector<uint16_t> q, k, v;
  Case(int64_t n_, int64_t H_, int64_t Hkv_, int64_t D_, int64_t start_, uint32_t seed)
      : n(n_), H(H_), Hkv(Hkv_), D(D_), start(start_), cap(start_ + n_ + 3) {
    q = random_bf16(n * H * D, seed);
    k = random_bf16(Hkv * cap * D, seed + 1);
    v = random_bf16(Hkv * cap * D, seed + 2);
  }
  std::vector<uint16_t> run(int64_t row0, int64_t rows, int threads, SmallGemmPath path) const {
    std::vector<uint16_t> out(rows * H * D);
    saguaro::causal_attention_bf16(q.data() + row0 * H * D, H * D, k.data(), v.data(), cap, rows, H, Hkv, D,
                                   start + row0, 1.f / std::sqrt(float(D)), out.data(), threads, path);
    return out;
  }
};

std::vector<SmallGemmPath> paths() {
  std::vector<SmallGemmPath> p{SmallGemmPath::kScalar};
  if (saguaro::small_gemm_has_avx2()) p.push_back(SmallGemmPath::kAvx2);
  return p;
}

TEST(CausalAttention, MatchesDoubleReference) {
  for (SmallGemmPath path : paths())
    for (int64_t D : {8, 12, 64}) {
      const Case c(5, 6, 2, D, 9, 21);
      const auto out = c.run(0, c.n, 1, path);
      for (int64_t i = 0; i < c.n; ++i)
        for (int64_t h = 0; h < c.H; ++h) {
          const int64_t L = c.start + i + 1, kh = h / (c.H / c.Hkv);
          std::vector<double> s(L);
          double m = -1e300, z = 0;
          for (int64_t t = 0; t < L; ++t) {
            double dot = 0;
            for (int64_t d = 0; d < D; ++d)
              dot += double(saguaro::bf16_to_float(c.q[(i * c.H + h) * D + d])) *
                     saguaro::bf16_to_float(c.k[(kh * c.cap + t) * D + d]);
            s[t] = dot / std::sqrt(double(D));
            m = std::max(m, s[t]);
          }
          for (auto& x : s) z += (x = std::exp(x - m));
          for (int64_t d = 0; d < D; ++d) {
            double o = 0;
            for (int64_t t = 0; t < L; ++t) o += s[t] * saguaro::bf16_to_float(c.v[(kh * c.cap + t) * D + d]);
            const double got = saguaro::bf16_to_float(out[(i * c.H + h) * D + d]);
            // bf16 output: half an ulp of 2^-8 relative, plus fp32 accumulation slack
            EXPECT_NEAR(got, o / z, std::fabs(o / z) * 4e-3 + 1e-4) << "D=" << D << " i=" << i << " h=" << h;
          }
        }
    }
}

TEST(CausalAttention, RowsAreBatchThreadAndPathInvariant) {
  const Case c(7, 8, 2, 64, 40, 31);
  for (SmallGemmPath path : paths()) {
    std::vector<uint16_t> alone;
    for (int64_t i = 0; i < c.n; ++i) {
      auto row = c.run(i, 1, 1, path);
      alone.insert(alone.end(), row.begin(), row.end());
    }
    for (int threads : {1, 2, 3}) EXPECT_EQ(c.run(0, c.n, threads, path), alone) << "threads=" << threads;
    EXPECT_EQ(c.run(0, c.n, 1, SmallGemmPath::kScalar), alone);
  }
}

TEST(CausalAttention, InvarianceCheckCatchesAChangedKey) {
  Case c(2, 2, 1, 16, 4, 41);
  const auto before = c.run(0, 2, 1, SmallGemmPath::kAuto);
  c.k[3] ^= 0x0100;  // slot 0 of the only KV head: both rows see it
  EXPECT_NE(c.run(0, 2, 1, SmallGemmPath::kAuto), before);
}

TEST(CausalAttention, BranchRowsEqualTheirVisibleSlotsLaidOutAsAChain) {
  // a branch row sees prefix [0, p) and strided own slots; copying exactly those slots into a fresh
  // KV as one contiguous chain and running the causal kernel must give the same bits
  const int64_t H = 4, Hkv = 2, D = 32, start = 12, m = 3, count = 2, cap = start + count * m;
  const auto q = random_bf16(m * H * D, 61), k = random_bf16(Hkv * cap * D, 62), v = random_bf16(Hkv * cap * D, 63);
  const std::vector<int64_t> prefix{12, 7, 10}, own_first{start, start + 1, start + 2};
  std::vector<uint16_t> out(m * H * D);
  saguaro::branch_attention_bf16(q.data(), H * D, k.data(), v.data(), cap, m, H, Hkv, D, prefix.data(),
                                 own_first.data(), m, count, 0.3f, out.data(), 2);
  for (int64_t i = 0; i < m; ++i) {
    const int64_t L = prefix[i] + count;
    std::vector<uint16_t> k2(Hkv * L * D), v2(Hkv * L * D), want(H * D);
    for (int64_t kh = 0; kh < Hkv; ++kh)
      for (int64_t t = 0; t < L; ++t) {
        const int64_t slot = t < prefix[i] ? t : own_first[i] + (t - prefix[i]) * m;
        for (int64_t d = 0; d < D; ++d) {
          k2[(kh * L + t) * D + d] = k[(kh * cap + slot) * D + d];
          v2[(kh * L + t) * D + d] = v[(kh * cap + slot) * D + d];
        }
      }
    saguaro::causal_attention_bf16(q.data() + i * H * D, H * D, k2.data(), v2.data(), L, 1, H, Hkv, D, L - 1, 0.3f,
                                   want.data(), 1);
    EXPECT_EQ(std::vector<uint16_t>(out.begin() + i * H * D, out.begin() + (i + 1) * H * D), want) << "row " << i;
  }
  const std::vector<int64_t> past{start, start + 1, cap};  // row 2's own slots run past the capacity
  EXPECT_THROW(saguaro::branch_attention_bf16(q.data(), H * D, k.data(), v.data(), cap, m, H, Hkv, D, prefix.data(),
                                              past.data(), m, count, 0.3f, out.data(), 1),
               std::invalid_argument);
}

TEST(CausalAttention, BadArgumentsThrow) {
  const Case c(2, 4, 2, 8, 1, 51);
  std::vector<uint16_t> out(2 * 4 * 8);
  auto call = [&](int64_t n, int64_t H, int64_t Hkv, int64_t start, int threads) {
    saguaro::causal_attention_bf16(c.q.data(), H * 8, c.k.data(), c.v.data(), c.cap, n, H, Hkv, 8, start, 1.f,
                                   out.data(), threads);
  };
  EXPECT_THROW(call(0, 4, 2, 1, 1), std::invalid_argument);
  EXPECT_THROW(call(2, 4, 3, 1, 1), std::invalid_argument);            // 3 does not divide 4
  EXPECT_THROW(call(2, 4, 2, c.cap - 1, 1), std::invalid_argument);    // past the capacity
  EXPECT_THROW(call(2, 4, 2, 1, 0), std::invalid_argument);
}

}  // namespace
