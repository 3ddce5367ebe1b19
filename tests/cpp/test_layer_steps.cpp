// The fused steps of a bf16 decoder layer (rope_store.hpp, rms_norm.hpp's add_rms_norm_bf16,
// silu_mul.hpp): every SIMD path gives the scalar path's bits, the arithmetic is the documented one, and
// bad arguments throw. pytest holds them against the torch operators they replace.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "saguaro/cpu_features.hpp"
#include "saguaro/rms_norm.hpp"
#include "saguaro/rope_store.hpp"
#include "saguaro/silu_mul.hpp"
#include "saguaro/small_gemm.hpp"

namespace {

using saguaro::bf16_to_float;
using saguaro::CpuIsa;
using saguaro::float_to_bf16;

std::vector<uint16_t> random_bf16(size_t n, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(d(rng));
  return v;
}

TEST(SiluMul, EveryPathGivesTheScalarBits) {
  const int64_t M = 3, I = 8960 + 7;  // a tail on every path
  auto gu = random_bf16(static_cast<size_t>(M * 2 * I), 4.f, 1);
  const float edges[] = {-200.f, -88.75f, -88.5f, -87.5f, -0.f, 0.f, 88.5f, 89.f, 1e30f, -1e30f};
  for (size_t j = 0; j < sizeof(edges) / sizeof(edges[0]); ++j) gu[j] = float_to_bf16(edges[j]);
  std::vector<uint16_t> want(static_cast<size_t>(M * I)), got(want.size());
  saguaro::silu_mul_bf16(gu.data(), M, I, want.data(), CpuIsa::kScalar);
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (saguaro::cpu_isa_supported() < isa) continue;
    saguaro::silu_mul_bf16(gu.data(), M, I, got.data(), isa);
    EXPECT_EQ(got, want) << saguaro::cpu_isa_name(isa);
  }
  // silu(g) * u within a bf16 step or two of the double formula; -0 where exp(-g) overflows
  for (int64_t j = 0; j < I; j += 97) {
    const double g = bf16_to_float(gu[j]), u = bf16_to_float(gu[I + j]);
    const double exact = g / (1.0 + std::exp(-g)) * u;
    EXPECT_NEAR(bf16_to_float(want[j]), exact, 1.6e-2 * std::fabs(exact) + 1e-30) << j;
  }
  EXPECT_EQ(want[0], float_to_bf16(-0.f));
}

TEST(SiluMul, BadArgumentsThrow) {
  std::vector<uint16_t> a(8), o(4);
  EXPECT_THROW(saguaro::silu_mul_bf16(a.data(), 0, 4, o.data(), CpuIsa::kScalar), std::invalid_argument);
  EXPECT_THROW(saguaro::silu_mul_bf16(nullptr, 1, 4, o.data(), CpuIsa::kScalar), std::invalid_argument);
}

TEST(RopeStore, RotatesQAndKAndStoresKAndV) {
  // D = 2: rotate_half(x) = (-x1, x0), so each head turns by the angle whose cos / sin are given
  const int64_t n = 2, H = 2, Hkv = 1, D = 2, capacity = 5, start = 3;
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};  // [n, H + 2Hkv, D]
  std::vector<uint16_t> qkv(x.size());
  for (size_t i = 0; i < x.size(); ++i) qkv[i] = float_to_bf16(x[i]);
  const std::vector<uint16_t> cos = {float_to_bf16(0.f), float_to_bf16(0.f), float_to_bf16(1.f), float_to_bf16(1.f)};
  const std::vector<uint16_t> sin = {float_to_bf16(1.f), float_to_bf16(1.f), float_to_bf16(0.f), float_to_bf16(0.f)};
  std::vector<uint16_t> keys(capacity * D, 0), values(capacity * D, 0);
  saguaro::rope_store_bf16(qkv.data(), n, H, Hkv, D, cos.data(), sin.data(), keys.data(), values.data(), capacity, start);
  // row 0 turns by 90 degrees: (a, b) -> (-b, a); row 1 by 0
  const float want_row0[] = {-2, 1, -4, 3, -6, 5, 7, 8};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(bf16_to_float(qkv[j]), want_row0[j]) << j;
  for (int j = 8; j < 16; ++j) EXPECT_EQ(bf16_to_float(qkv[j]), x[j]) << j;
  EXPECT_EQ(bf16_to_float(keys[start * D]), -6.f);
  EXPECT_EQ(bf16_to_float(keys[(start + 1) * D + 1]), 14.f);
  EXPECT_EQ(bf16_to_float(values[start * D]), 7.f);
  EXPECT_EQ(bf16_to_float(values[(start + 1) * D + 1]), 16.f);
  EXPECT_EQ(keys[0], 0);  // other slots untouched
  EXPECT_THROW(saguaro::rope_store_bf16(qkv.data(), n, H, Hkv, D, cos.data(), sin.data(), keys.data(), values.data(),
                                        capacity, 4),
               std::invalid_argument);
  EXPECT_THROW(saguaro::rope_store_bf16(qkv.data(), n, 3, 2, D, cos.data(), sin.data(), keys.data(), values.data(),
                                        capacity, 0),
               std::invalid_argument);
}

TEST(AddRmsNorm, IsTheAddThenTheNorm) {
  const int64_t M = 4, D = 1536;
  auto x = random_bf16(M * D, 2.f, 2), delta = random_bf16(M * D, 0.01f, 3), w = random_bf16(D, 1.f, 4);
  std::vector<uint16_t> sum(M * D), out(M * D), want_sum(M * D), want(M * D);
  for (int64_t j = 0; j < M * D; ++j) want_sum[j] = float_to_bf16(bf16_to_float(x[j]) + bf16_to_float(delta[j]));
  saguaro::rms_norm_bf16(want_sum.data(), w.data(), M, D, 1e-6f, want.data());
  saguaro::add_rms_norm_bf16(x.data(), delta.data(), w.data(), M, D, 1e-6f, sum.data(), out.data());
  EXPECT_EQ(sum, want_sum);
  EXPECT_EQ(out, want);
  saguaro::add_rms_norm_bf16(x.data(), delta.data(), w.data(), M, D, 1e-6f, x.data(), out.data());  // sum in x
  EXPECT_EQ(x, want_sum);
  EXPECT_EQ(out, want);
  EXPECT_THROW(saguaro::add_rms_norm_bf16(x.data(), delta.data(), w.data(), M, D, 1e-6f, sum.data(), x.data()),
               std::invalid_argument);
}

}  // namespace
