// The batch-invariant bf16 small-M linear kernel: accuracy against a double reference, bit-exact
// invariance over rows / threads / code paths, odd sizes, bias, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "saguaro/small_gemm.hpp"

namespace {

using saguaro::SmallGemmPath;

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = saguaro::float_to_bf16(d(g));
  return v;
}

std::vector<float> run_f32(const std::vector<uint16_t>& x, const std::vector<uint16_t>& w, const uint16_t* bias,
                           int64_t M, int64_t N, int64_t K, int threads, SmallGemmPath path) {
  std::vector<float> y(static_cast<size_t>(M * N));
  saguaro::small_gemm_bf16(x.data(), w.data(), bias, M, N, K, nullptr, y.data(), threads, path);
  return y;
}

std::vector<SmallGemmPath> paths() {
  std::vector<SmallGemmPath> p{SmallGemmPath::kScalar};
  if (saguaro::small_gemm_has_avx2()) p.push_back(SmallGemmPath::kAvx2);
  return p;
}

TEST(SmallGemm, MatchesDoubleReferenceOnOddSizes) {
  for (SmallGemmPath path : paths())
    for (int64_t K : {1, 7, 8, 9, 17, 33, 130, 901})
      for (int64_t N : {1, 3, 4, 5, 67})
        for (bool with_bias : {false, true}) {
          const int64_t M = 7;
          auto x = random_bf16(M * K, 1), w = random_bf16(N * K, 2, 1.f / std::sqrt(float(K))), b = random_bf16(N, 3);
          auto y = run_f32(x, w, with_bias ? b.data() : nullptr, M, N, K, 1, path);
          std::vector<uint16_t> y16(M * N);
          saguaro::small_gemm_bf16(x.data(), w.data(), with_bias ? b.data() : nullptr, M, N, K, y16.data(), nullptr, 1,
                                   path);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              double ref = with_bias ? saguaro::bf16_to_float(b[n]) : 0.0, mag = std::fabs(ref);
              for (int64_t k = 0; k < K; ++k) {
                const double p = double(saguaro::bf16_to_float(x[m * K + k])) * saguaro::bf16_to_float(w[n * K + k]);
                ref += p;
                mag += std::fabs(p);
              }
              // fp32 accumulation: each of <= K + 4 roundings errs by at most 2^-24 of the running magnitude
              EXPECT_LE(std::fabs(y[m * N + n] - ref), (K + 4) * std::ldexp(mag, -24) + 1e-30)
                  << "K=" << K << " N=" << N << " m=" << m << " n=" << n;
              EXPECT_EQ(y16[m * N + n], saguaro::float_to_bf16(y[m * N + n]));  // bf16 out = RNE of fp32 out
            }
        }
}

TEST(SmallGemm, RowsAreBatchAndThreadInvariant) {
  // K over two k chunks (256): row blocks beyond 6 rows take turns on a chunk
  const int64_t K = 603, N = 389, Mmax = 33;
  auto x = random_bf16(Mmax * K, 4), w = random_bf16(N * K, 5, 0.1f), b = random_bf16(N, 6);
  std::vector<std::vector<float>> alone;
  for (int64_t m = 0; m < Mmax; ++m) {
    std::vector<uint16_t> row(x.begin() + m * K, x.begin() + (m + 1) * K);
    alone.push_back(run_f32(row, w, b.data(), 1, N, K, 1, SmallGemmPath::kAuto));
  }
  for (int64_t M = 1; M <= Mmax; ++M)
    for (int threads : {1, 2, 5}) {
      auto y = run_f32(x, w, b.data(), M, N, K, threads, SmallGemmPath::kAuto);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n)
          ASSERT_EQ(y[m * N + n], alone[m][n]) << "M=" << M << " threads=" << threads << " m=" << m << " n=" << n;
    }
}

TEST(SmallGemm, PackedLayoutAndPackedCalls) {
  const int64_t K = 37, N = 35, M = 9;
  EXPECT_EQ(saguaro::small_gemm_packed_size(N, K), 3 * K * 16);
  auto x = random_bf16(M * K, 14), w = random_bf16(N * K, 15), b = random_bf16(N, 16);
  std::vector<uint16_t> packed(static_cast<size_t>(saguaro::small_gemm_packed_size(N, K)), 0xffff);
  saguaro::small_gemm_pack_bf16(w.data(), N, K, packed.data(), 2);
  for (int64_t n = 0; n < 48; ++n)
    for (int64_t k = 0; k < K; ++k) {
      // column n of panel n / 16: low half of word n % 8 for n % 16 < 8, else the high half
      const int64_t c = n % 16, at = (n / 16) * K * 16 + k * 16 + 2 * (c % 8) + c / 8;
      ASSERT_EQ(packed[at], n < N ? w[n * K + k] : 0) << "n=" << n << " k=" << k;
    }
  for (SmallGemmPath path : paths()) {
    std::vector<float> y(M * N);
    saguaro::small_gemm_bf16_packed(x.data(), packed.data(), b.data(), M, N, K, nullptr, y.data(), 3, path);
    EXPECT_EQ(y, run_f32(x, w, b.data(), M, N, K, 1, path));
  }
}

TEST(SmallGemm, PathsAgreeBitForBit) {
  if (!saguaro::small_gemm_has_avx2()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  // every tile shape (1 x 4 .. 6 x 1, the shifted and the moved-load widening, k chunks) and K = 1
  for (int64_t K : {1, 5, 8, 24, 37, 896})
    for (int64_t M : {1, 2, 3, 4, 5, 6, 11, 16}) {
      const int64_t N = 29 + 16 * 4;
      auto x = random_bf16(M * K, 7), w = random_bf16(N * K, 8), b = random_bf16(N, 9);
      auto a = run_f32(x, w, b.data(), M, N, K, 1, SmallGemmPath::kAvx2);
      auto s = run_f32(x, w, b.data(), M, N, K, 1, SmallGemmPath::kScalar);
      for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], s[i]) << "K=" << K << " M=" << M << " i=" << i;
    }
}

TEST(SmallGemm, InvarianceCheckCatchesAChangedRow) {
  // planted: the comparison above notices a one-ulp change of another row's input in row 0's output
  const int64_t K = 64, N = 8;
  auto x = random_bf16(2 * K, 10), w = random_bf16(N * K, 11);
  auto y = run_f32(x, w, nullptr, 2, N, K, 1, SmallGemmPath::kAuto);
  x[5] ^= 1;  // row 0 changes: its outputs must change somewhere
  auto z = run_f32(x, w, nullptr, 2, N, K, 1, SmallGemmPath::kAuto);
  bool changed = false;
  for (int64_t n = 0; n < N; ++n) changed |= y[n] != z[n];
  EXPECT_TRUE(changed);
}

TEST(SmallGemm, ConcurrentCallersGetTheSameBits) {
  const int64_t K = 96, N = 700, M = 6;
  auto x = random_bf16(M * K, 12), w = random_bf16(N * K, 13);
  const auto expect = run_f32(x, w, nullptr, M, N, K, 1, SmallGemmPath::kAuto);
  std::vector<std::thread> callers;
  std::vector<int> ok(4, 1);
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i)
        if (run_f32(x, w, nullptr, M, N, K, 2, SmallGemmPath::kAuto) != expect) ok[t] = 0;
    });
  for (auto& c : callers) c.join();
  for (int t = 0; t < 4; ++t) EXPECT_TRUE(ok[t]) << "caller " << t;
}

TEST(SmallGemm, BadArgumentsThrowNamingTheArgument) {
  std::vector<uint16_t> x(8), w(8);
  std::vector<float> y(4);
  auto msg = [&](auto f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  EXPECT_NE(msg([&] { saguaro::small_gemm_bf16(x.data(), w.data(), nullptr, 0, 1, 8, nullptr, y.data(), 1); }).find("M"),
            std::string::npos);
  EXPECT_NE(msg([&] { saguaro::small_gemm_bf16(x.data(), w.data(), nullptr, 1, 1, 0, nullptr, y.data(), 1); }).find("K"),
            std::string::npos);
  EXPECT_NE(msg([&] { saguaro::small_gemm_bf16(nullptr, w.data(), nullptr, 1, 1, 8, nullptr, y.data(), 1); }).find("x"),
            std::string::npos);
  EXPECT_NE(msg([&] { saguaro::small_gemm_bf16(x.data(), w.data(), nullptr, 1, 1, 8, nullptr, nullptr, 1); }).find("out"),
            std::string::npos);
  EXPECT_NE(msg([&] { saguaro::small_gemm_bf16(x.data(), w.data(), nullptr, 1, 1, 8, nullptr, y.data(), 0); })
                .find("threads"),
            std::string::npos);
  EXPECT_NE(msg([] { saguaro::small_gemm_fma_peak(0.0); }).find("seconds"), std::string::npos);
  EXPECT_NE(msg([] { saguaro::small_gemm_time_packed(1, 0, 8, 3); }).find("N"), std::string::npos);
  EXPECT_NE(msg([] { saguaro::small_gemm_time_packed(1, 8, 8, 0); }).find("reps"), std::string::npos);
  EXPECT_NE(msg([] { saguaro::small_gemm_time_packed(1, 8, 8, 3, 0); }).find("threads"), std::string::npos);
}

}  // namespace
