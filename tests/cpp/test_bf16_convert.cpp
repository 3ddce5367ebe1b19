// bf16 <-> float arrays on every path the CPU has: the bits of the scalar helpers (small_gemm.hpp) for
// every value, rounding ties, subnormals, infinities and NaNs included, at lengths with a scalar tail.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "saguaro/bf16_convert.hpp"
#include "saguaro/cpu_features.hpp"
#include "saguaro/small_gemm.hpp"

namespace {

using saguaro::CpuIsa;

std::vector<const char*> paths() {
  std::vector<const char*> p{"scalar"};
  if (saguaro::cpu_isa_supported() >= CpuIsa::kAvx2) p.push_back("avx2");
  if (saguaro::cpu_isa_supported() >= CpuIsa::kAvx512) p.push_back("avx512");
  return p;
}

std::vector<float> values(size_t n) {
  std::mt19937 rng(11);
  std::vector<float> v(n);
  for (auto& x : v) {
    uint32_t u = rng();  // any bit pattern: normals, subnormals, infinities, NaNs
    std::memcpy(&x, &u, 4);
  }
  const float special[] = {0.f, -0.f, 1.f, 1.00390625f, 1.0078125f, 1.01171875f,  // ties to even both ways
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min(),
                           3.3895314e38f /* rounds up to inf */};
  for (size_t i = 0; i < sizeof special / sizeof *special && i < n; ++i) v[i] = special[i];
  return v;
}

TEST(Bf16Convert, EveryPathGivesTheScalarBits) {
  for (const size_t n : {size_t{1}, size_t{15}, size_t{16}, size_t{37}, size_t{4099}}) {
    const auto x = values(n);
    std::vector<uint16_t> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = saguaro::float_to_bf16(x[i]);
    for (const char* path : paths()) {
      setenv("SAGUARO_CPU_ISA", path, 1);
      std::vector<uint16_t> got(n, 0xabcd);
      saguaro::floats_to_bf16(x.data(), got.data(), static_cast<int64_t>(n));
      EXPECT_EQ(got, want) << path << ", n " << n;
      std::vector<float> back(n);
      saguaro::bf16_to_floats(got.data(), back.data(), static_cast<int64_t>(n));
      for (size_t i = 0; i < n; ++i) {
        const float w = saguaro::bf16_to_float(want[i]);
        EXPECT_EQ(std::memcmp(&back[i], &w, 4), 0) << path << ", n " << n << ", i " << i;
      }
    }
    unsetenv("SAGUARO_CPU_ISA");
  }
}

}  // namespace
