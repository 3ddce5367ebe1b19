// Rotary embedding of the new rows' q / k heads and their store into the KV slots (include/saguaro/rope_store.hpp).
#include "saguaro/rope_store.hpp"

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/small_gemm.hpp"  // bf16 <-> float

namespace saguaro {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("rope_store_bf16: " + what); }

// x'[t] = bf16(bf16(x[t] * c[t]) + bf16(r[t] * s[t])), r = rotate_half(x); `src` is a copy of x, so x is
// overwritten in place. Each product of two bf16 values is exact in fp32; the sum is an fp32 add, then
// rounded, as torch's bf16 add does.
void rotate_head(const float* src, const float* c, const float* s, int64_t D, uint16_t* x) {
  const int64_t half = D / 2;
  for (int64_t t = 0; t < D; ++t) {
    const float r = t < half ? -src[t + half] : src[t - half];
    const float a = bf16_to_float(float_to_bf16(src[t] * c[t]));
    const float b = bf16_to_float(float_to_bf16(r * s[t]));
    x[t] = float_to_bf16(a + b);
  }
}

}  // namespace

void rope_store_bf16(uint16_t* qkv, int64_t n, int64_t H, int64_t Hkv, int64_t D, const uint16_t* cos,
                     const uint16_t* sin, uint16_t* keys, uint16_t* values, int64_t capacity, int64_t start) {
  if (n < 1 || H < 1 || Hkv < 1 || D < 2 || D % 2 != 0)
    bad("needs n, H, Hkv >= 1 and an even D >= 2, got n=" + std::to_string(n) + " H=" + std::to_string(H) +
        " Hkv=" + std::to_string(Hkv) + " D=" + std::to_string(D));
  if (H % Hkv != 0) bad("KV heads (" + std::to_string(Hkv) + ") must divide the query heads (" + std::to_string(H) + ")");
  if (start < 0 || start + n > capacity)
    bad("start + rows must be <= the KV capacity " + std::to_string(capacity) + ", got start=" + std::to_string(start) +
        " rows=" + std::to_string(n));
  if (!qkv || !cos || !sin || !keys || !values) bad("null pointer");
  const int64_t row = (H + 2 * Hkv) * D;
  std::vector<float> c(static_cast<size_t>(D)), s(static_cast<size_t>(D)), src(static_cast<size_t>(D));
  for (int64_t i = 0; i < n; ++i) {
    uint16_t* r = qkv + i * row;
    for (int64_t t = 0; t < D; ++t) {
      c[t] = bf16_to_float(cos[i * D + t]);
      s[t] = bf16_to_float(sin[i * D + t]);
    }
    for (int64_t h = 0; h < H + Hkv; ++h) {
      uint16_t* x = r + h * D;
      for (int64_t t = 0; t < D; ++t) src[t] = bf16_to_float(x[t]);
      rotate_head(src.data(), c.data(), s.data(), D, x);
    }
    const int64_t slot = start + i;
    for (int64_t h = 0; h < Hkv; ++h) {
      std::memcpy(keys + (h * capacity + slot) * D, r + (H + h) * D, static_cast<size_t>(D) * sizeof(uint16_t));
      std::memcpy(values + (h * capacity + slot) * D, r + (H + Hkv + h) * D, static_cast<size_t>(D) * sizeof(uint16_t));
    }
  }
}

}  // namespace saguaro
