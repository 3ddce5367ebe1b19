// The quantized GEMM (include/saguaro/quant_gemm.hpp): every format on every path this CPU has against
// the scalar reference path (bit-exact: the integer sums are exact and the float steps are fixed), against
// the dequantized weights times the unquantized activations (within the int8 activation error), batch
// and thread invariance, and the argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_gemm.hpp"

namespace {

using saguaro::CpuIsa;
using saguaro::QuantType;

uint16_t float_to_half(float f) {  // round to nearest, normal range only (test scales)
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  uint32_t man = u & 0x7fffffu;
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (man >> 13);
  if ((man & 0x1fffu) > 0x1000u || ((man & 0x1fffu) == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(h);
}

// Random blocks: random quant bytes everywhere, then sane fp16 scales written over the d / dmin fields
// (random bytes there would be NaN or huge).
std::vector<uint8_t> random_weights(QuantType t, int64_t N, int64_t K, std::mt19937& rng) {
  const int64_t bytes = saguaro::quant_row_bytes(t, K) * N, bb = saguaro::quant_block_bytes(t);
  std::vector<uint8_t> w(static_cast<size_t>(bytes));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& v : w) v = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(0.001f, 0.02f);
  for (int64_t off = 0; off < bytes; off += bb) {
    const uint16_t d = float_to_half(scale(rng)), dmin = float_to_half(scale(rng));
    switch (t) {
      case QuantType::kQ4_K:
        std::memcpy(&w[off], &d, 2);
        std::memcpy(&w[off + 2], &dmin, 2);
        break;
      case QuantType::kQ6_K: std::memcpy(&w[off + 208], &d, 2); break;
      default: std::memcpy(&w[off], &d, 2); break;
    }
  }
  return w;
}

std::vector<float> random_x(int64_t M, int64_t K, std::mt19937& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(M * K));
  for (auto& v : x) v = g(rng);
  if (M * K > 40) std::fill(x.begin() + 7, x.begin() + 40, 0.f);  // an all-zero activation block
  return x;
}

std::vector<CpuIsa> paths() {
  std::vector<CpuIsa> out{CpuIsa::kScalar};
  if (saguaro::cpu_isa_supported() >= CpuIsa::kAvx2) out.push_back(CpuIsa::kAvx2);
  if (saguaro::cpu_isa_supported() >= CpuIsa::kAvx512) out.push_back(CpuIsa::kAvx512);
  return out;
}

struct Case {
  QuantType t;
  int64_t K;  // Q5_0 / Q8_0 with 896 = 28 blocks: three groups of 8 and a partial one
};

class QuantGemm : public ::testing::TestWithParam<Case> {};

std::vector<float> run(QuantType t, const std::vector<uint8_t>& w, int64_t N, int64_t K, const std::vector<float>& x,
                       int64_t M, int threads, CpuIsa isa) {
  std::vector<float> y(static_cast<size_t>(M * N), -1.f);
  saguaro::quant_gemm(t, w.data(), N, K, x.data(), M, y.data(), N, threads, isa);
  return y;
}

TEST_P(QuantGemm, EveryPathMatchesTheScalarReferenceBitForBit) {
  const auto [t, K] = GetParam();
  std::mt19937 rng(static_cast<unsigned>(K) * 7 + static_cast<unsigned>(t));
  const int64_t N = 70;
  const auto w = random_weights(t, N, K, rng);
  for (int64_t M : {1, 5, 16}) {
    const auto x = random_x(M, K, rng);
    const auto ref = run(t, w, N, K, x, M, 1, CpuIsa::kScalar);
    for (CpuIsa isa : paths()) {
      const auto y = run(t, w, N, K, x, M, 2, isa);
      for (int64_t i = 0; i < M * N; ++i)
        ASSERT_EQ(y[i], ref[i]) << saguaro::quant_type_name(t) << " path " << saguaro::cpu_isa_name(isa) << " M=" << M
                                << " at " << i;
    }
  }
}

TEST_P(QuantGemm, MatchesTheDequantizedProductWithinTheActivationError) {
  const auto [t, K] = GetParam();
  std::mt19937 rng(99 + static_cast<unsigned>(K));
  const int64_t N = 33, M = 3;
  const auto w = random_weights(t, N, K, rng);
  const auto x = random_x(M, K, rng);
  std::vector<float> wf(static_cast<size_t>(N * K));
  saguaro::quant_dequantize_rows(t, w.data(), N, K, wf.data());
  const auto y = run(t, w, N, K, x, M, 1, saguaro::cpu_isa_supported());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double exact = 0, bound = 0;
      for (int64_t k = 0; k < K; ++k) {
        exact += static_cast<double>(x[m * K + k]) * wf[n * K + k];
        bound += std::fabs(wf[n * K + k]);
      }
      // each activation is off by at most half a step, max|x block| / 254 <= 4.5 / 254 for these x
      double amax = 0;
      for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(x[m * K + k]));
      const double tol = bound * amax / 254 * 1.01 + 1e-4 * bound;
      EXPECT_NEAR(y[m * N + n], exact, tol) << saguaro::quant_type_name(t) << " m=" << m << " n=" << n;
    }
}

TEST_P(QuantGemm, RowsDoNotDependOnTheOtherRowsOrTheThreadCount) {
  const auto [t, K] = GetParam();
  std::mt19937 rng(5 + static_cast<unsigned>(K));
  const int64_t N = 130, M = 16;
  const auto w = random_weights(t, N, K, rng);
  const auto x = random_x(M, K, rng);
  for (CpuIsa isa : paths()) {
    const auto all = run(t, w, N, K, x, M, 2, isa);
    for (int64_t m : {0, 4, 15}) {
      const std::vector<float> one(x.begin() + m * K, x.begin() + (m + 1) * K);
      const auto y = run(t, w, N, K, one, 1, 1, isa);
      for (int64_t n = 0; n < N; ++n) ASSERT_EQ(y[n], all[m * N + n]) << "row " << m << " col " << n;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantGemm,
                         ::testing::Values(Case{QuantType::kQ4_K, 512}, Case{QuantType::kQ6_K, 768},
                                           Case{QuantType::kQ8_0, 896}, Case{QuantType::kQ5_0, 896},
                                           Case{QuantType::kQ8_0, 256}, Case{QuantType::kQ5_0, 64}),
                         [](const auto& info) {
                           return std::string(saguaro::quant_type_name(info.param.t)) + "_K" +
                                  std::to_string(info.param.K);
                         });

TEST(QuantGemmFormats, DequantizesKnownBlocks) {
  // Q8_0: d = 0.5, q = -3 .. 28 -> -1.5 .. 14
  std::vector<uint8_t> b(34);
  const uint16_t half = float_to_half(0.5f);
  std::memcpy(b.data(), &half, 2);
  for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 3));
  std::vector<float> out(32);
  saguaro::quant_dequantize_rows(QuantType::kQ8_0, b.data(), 1, 32, out.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * (i - 3));
  // Q5_0: d = 2, low nibbles 0..15 / 15..0, high bits set for values 16..31 -> (q - 16) * 2
  std::vector<uint8_t> c(22, 0);
  const uint16_t two = float_to_half(2.f);
  std::memcpy(c.data(), &two, 2);
  const uint32_t qh = 0xffff0000u;
  std::memcpy(c.data() + 2, &qh, 4);
  for (int j = 0; j < 16; ++j) c[6 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  saguaro::quant_dequantize_rows(QuantType::kQ5_0, c.data(), 1, 32, out.data());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 2.f * (j - 16));
    EXPECT_EQ(out[j + 16], 2.f * ((15 - j) + 16 - 16));
  }
}

TEST(QuantGemmArgs, BadInputsThrowWithTheArgumentsName) {
  std::vector<uint8_t> w(144 * 2);
  std::vector<float> x(256), y(2);
  EXPECT_THROW(saguaro::quant_gemm(QuantType::kQ4_K, w.data(), 2, 100, x.data(), 1, y.data(), 2, 1, CpuIsa::kScalar),
               std::invalid_argument);
  EXPECT_THROW(saguaro::quant_gemm(QuantType::kQ4_K, w.data(), 2, 256, x.data(), 0, y.data(), 2, 1, CpuIsa::kScalar),
               std::invalid_argument);
  EXPECT_THROW(saguaro::quant_gemm(QuantType::kQ4_K, w.data(), 2, 256, x.data(), 1, y.data(), 1, 1, CpuIsa::kScalar),
               std::invalid_argument);
  EXPECT_THROW(saguaro::quant_gemm(static_cast<QuantType>(2), w.data(), 2, 256, x.data(), 1, y.data(), 2, 1,
                                   CpuIsa::kScalar),
               std::invalid_argument);
  EXPECT_THROW(saguaro::quant_gemm(QuantType::kQ4_K, nullptr, 2, 256, x.data(), 1, y.data(), 2, 1, CpuIsa::kScalar),
               std::invalid_argument);
  EXPECT_THROW(saguaro::parse_cpu_isa("sse"), std::invalid_argument);
  try {
    saguaro::quant_row_bytes(QuantType::kQ6_K, 300);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 256"), std::string::npos) << e.what();
  }
}

TEST(QuantGemmArgs, TheEnvironmentLowersThePath) {
  setenv("SAGUARO_CPU_ISA", "scalar", 1);
  EXPECT_EQ(saguaro::cpu_isa_selected(), CpuIsa::kScalar);
  setenv("SAGUARO_CPU_ISA", "avx512", 1);
  EXPECT_EQ(saguaro::cpu_isa_selected(), saguaro::cpu_isa_supported());
  setenv("SAGUARO_CPU_ISA", "bogus", 1);
  EXPECT_THROW(saguaro::cpu_isa_selected(), std::invalid_argument);
  unsetenv("SAGUARO_CPU_ISA");
  EXPECT_EQ(saguaro::cpu_isa_selected(), saguaro::cpu_isa_supported());
}

}  // namespace

#include "saguaro/quant_q4k16.hpp"

namespace {

TEST(QuantQ4k16, RepackedProductHasTheGgufBlocksBits) {
  std::mt19937 rng(2024);
  const int64_t N = 48, K = 512;
  const auto w = random_weights(QuantType::kQ4_K, N, K, rng);
  std::vector<uint8_t> packed(static_cast<size_t>(saguaro::q4k16_packed_bytes(N, K)));
  saguaro::q4k16_repack(w.data(), N, K, packed.data(), 2);
  for (int64_t M : {1, 3, 5, 16}) {
    const auto x = random_x(M, K, rng);
    const auto ref = run(QuantType::kQ4_K, w, N, K, x, M, 1, CpuIsa::kScalar);
    for (CpuIsa isa : paths()) {
      std::vector<float> y(static_cast<size_t>(M * N), -1.f);
      saguaro::q4k16_gemm(packed.data(), N, K, x.data(), M, y.data(), N, 2, isa);
      for (int64_t i = 0; i < M * N; ++i)
        ASSERT_EQ(y[i], ref[i]) << "path " << saguaro::cpu_isa_name(isa) << " M=" << M << " at " << i;
    }
  }
  EXPECT_THROW(saguaro::q4k16_packed_bytes(40, 256), std::invalid_argument);
  EXPECT_THROW(saguaro::q4k16_packed_bytes(48, 200), std::invalid_argument);
}

}  // namespace

#include "saguaro/quant_b16.hpp"

namespace {

TEST(QuantB16, RepackedProductHasTheGgufBlocksBits) {
  for (QuantType t : {QuantType::kQ5_0, QuantType::kQ8_0})
    for (int64_t K : {896, 256, 64}) {  // 896: three groups of 8 blocks and a partial one
      std::mt19937 rng(static_cast<unsigned>(K) + static_cast<unsigned>(t));
      const int64_t N = 32;
      const auto w = random_weights(t, N, K, rng);
      std::vector<uint8_t> packed(static_cast<size_t>(saguaro::quant_b16_packed_bytes(t, N, K)));
      saguaro::quant_b16_repack(t, w.data(), N, K, packed.data());
      for (int threads : {2, 3}) {  // 2 groups of 16 rows: one part each, and a part with none
        std::vector<uint8_t> split(packed.size(), 0xab);
        saguaro::quant_b16_repack(t, w.data(), N, K, split.data(), threads);
        ASSERT_EQ(split, packed) << saguaro::quant_type_name(t) << " K=" << K << " threads=" << threads;
      }
      for (int64_t M : {1, 5, 16}) {
        const auto x = random_x(M, K, rng);
        const auto ref = run(t, w, N, K, x, M, 1, CpuIsa::kScalar);
        for (CpuIsa isa : paths()) {
          std::vector<float> y(static_cast<size_t>(M * N), -1.f);
          saguaro::quant_b16_gemm(t, packed.data(), N, K, x.data(), M, y.data(), N, 2, isa);
          for (int64_t i = 0; i < M * N; ++i)
            ASSERT_EQ(y[i], ref[i]) << saguaro::quant_type_name(t) << " K=" << K << " path "
                                    << saguaro::cpu_isa_name(isa) << " M=" << M << " at " << i;
        }
      }
    }
  EXPECT_THROW(saguaro::quant_b16_packed_bytes(QuantType::kQ4_K, 32, 256), std::invalid_argument);
  EXPECT_THROW(saguaro::quant_b16_packed_bytes(QuantType::kQ8_0, 40, 256), std::invalid_argument);
  std::vector<uint8_t> w(static_cast<size_t>(16 * saguaro::quant_row_bytes(QuantType::kQ8_0, 256)));
  std::vector<uint8_t> out(static_cast<size_t>(saguaro::quant_b16_packed_bytes(QuantType::kQ8_0, 16, 256)));
  EXPECT_THROW(saguaro::quant_b16_repack(QuantType::kQ8_0, w.data(), 16, 256, out.data(), 0), std::invalid_argument);
}

// The AMX tiles (12 rows and more, where the CPU and OS allow them) against the AVX-512 VNNI kernel and the
// scalar reference: the same bits, with one row tile, a padded one and several (17, 33 rows), and a
// partial last record (K = 896).
TEST(QuantB16, AmxTilesGiveTheSameBitsAsTheOtherPaths) {
  if (!saguaro::cpu_amx_supported()) GTEST_SKIP() << "this CPU or OS offers no AMX-INT8 tiles";
  const char* saved = std::getenv("SAGUARO_CPU_AMX");
  const std::string restore = saved == nullptr ? "" : saved;
  for (QuantType t : {QuantType::kQ5_0, QuantType::kQ8_0})
    for (int64_t K : {896, 256}) {
      std::mt19937 rng(static_cast<unsigned>(K) * 7u + static_cast<unsigned>(t));
      const int64_t N = 48;
      const auto w = random_weights(t, N, K, rng);
      std::vector<uint8_t> packed(static_cast<size_t>(saguaro::quant_b16_packed_bytes(t, N, K)));
      saguaro::quant_b16_repack(t, w.data(), N, K, packed.data());
      for (int64_t M : {12, 16, 17, 33}) {
        const auto x = random_x(M, K, rng);
        const auto ref = run(t, w, N, K, x, M, 1, CpuIsa::kScalar);
        for (const char* amx : {"1", "0"}) {
          setenv("SAGUARO_CPU_AMX", amx, 1);
          ASSERT_EQ(saguaro::cpu_amx_selected(), std::string(amx) == "1");
          for (int threads : {1, 2}) {
            std::vector<float> y(static_cast<size_t>(M * N), -1.f);
            saguaro::quant_b16_gemm(t, packed.data(), N, K, x.data(), M, y.data(), N, threads, CpuIsa::kAvx512);
            ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
                << saguaro::quant_type_name(t) << " K=" << K << " M=" << M << " amx=" << amx << " threads=" << threads;
          }
        }
      }
    }
  if (saved == nullptr) unsetenv("SAGUARO_CPU_AMX");
  else setenv("SAGUARO_CPU_AMX", restore.c_str(), 1);
}

// Activation blocks the vector quantizers could round differently: exact ties (x * 127 / amax = k + 1/2,
// to even), an all-zero block, a NaN (ignored by the block's max, quantized to -127) and tiny values. Every
// path must give the scalar path's bits.
TEST(QuantGemm, ActivationQuantizationEdgesGiveTheSameBitsOnEveryPath) {
  for (QuantType t : {QuantType::kQ8_0, QuantType::kQ4_K}) {
    const int64_t K = 256, N = 32, M = 3;
    std::mt19937 rng(5);
    const auto w = random_weights(t, N, K, rng);
    std::vector<float> x(static_cast<size_t>(M * K));
    for (int64_t i = 0; i < K; ++i) x[i] = (i % 2 ? -1.f : 1.f) * (static_cast<float>(i % 8) + 0.5f);
    x[5] = 127.f;  // amax 127: iscale 1, so the k + 0.5 values are ties
    for (int64_t i = 0; i < K; ++i) x[K + i] = i < 32 ? 0.f : 1e-30f * static_cast<float>(i);
    std::normal_distribution<float> g(0.f, 1.f);
    for (int64_t i = 0; i < K; ++i) x[2 * K + i] = g(rng);
    x[2 * K + 3] = std::nanf("");
    const auto ref = run(t, w, N, K, x, M, 1, CpuIsa::kScalar);
    for (CpuIsa isa : paths()) {
      const auto y = run(t, w, N, K, x, M, 1, isa);
      ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0) << saguaro::cpu_isa_name(isa);
    }
  }
}

}  // namespace

#include "saguaro/quant_q6k16.hpp"

namespace {

// Every row tile of the interleaved kernel (1..5 rows; 6 = 3 + 3, 16 = 4 x 4) on every path this CPU has.
TEST(QuantQ6k16, RepackedProductHasTheGgufBlocksBits) {
  std::mt19937 rng(2026);
  const int64_t N = 48, K = 768;
  const auto w = random_weights(QuantType::kQ6_K, N, K, rng);
  std::vector<uint8_t> packed(static_cast<size_t>(saguaro::q6k16_packed_bytes(N, K)));
  saguaro::q6k16_repack(w.data(), N, K, packed.data(), 2);
  for (int64_t M : {1, 2, 3, 4, 5, 6, 16}) {
    const auto x = random_x(M, K, rng);
    const auto ref = run(QuantType::kQ6_K, w, N, K, x, M, 1, CpuIsa::kScalar);
    for (CpuIsa isa : paths()) {
      std::vector<float> y(static_cast<size_t>(M * N), -1.f);
      saguaro::q6k16_gemm(packed.data(), N, K, x.data(), M, y.data(), N, 2, isa);
      for (int64_t i = 0; i < M * N; ++i)
        ASSERT_EQ(y[i], ref[i]) << "path " << saguaro::cpu_isa_name(isa) << " M=" << M << " at " << i;
    }
  }
  EXPECT_THROW(saguaro::q6k16_packed_bytes(40, 256), std::invalid_argument);
  EXPECT_THROW(saguaro::q6k16_packed_bytes(48, 200), std::invalid_argument);
}

}  // namespace
