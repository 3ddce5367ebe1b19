// RMSNorm of bf16 rows (include/saguaro/rms_norm.hpp).
#include "saguaro/rms_norm.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "saguaro/small_gemm.hpp"  // bf16 <-> float

namespace saguaro {

namespace {

void check(const uint16_t* x, const uint16_t* weight, int64_t M, int64_t D, float eps, const uint16_t* out,
           const char* name) {
  if (M < 1 || D < 1)
    throw std::invalid_argument(std::string(name) + ": needs M >= 1 and D >= 1, got " + std::to_string(M) + " x " +
                                std::to_string(D));
  if (x == nullptr || weight == nullptr || out == nullptr) throw std::invalid_argument(std::string(name) + ": null pointer");
  if (!(eps > 0.f)) throw std::invalid_argument(std::string(name) + ": eps must be > 0, got " + std::to_string(eps));
}

// One row: the definition of the formula in rms_norm.hpp.
void norm_row(const uint16_t* row, const uint16_t* weight, int64_t D, float eps, uint16_t* o) {
  double sum = 0.0;  // in order, in double: exact enough that the order no longer shows in fp32
  for (int64_t d = 0; d < D; ++d) {
    const double v = bf16_to_float(row[d]);
    sum += v * v;
  }
  const float mean = static_cast<float>(sum / static_cast<double>(D));
  const float r = 1.f / std::sqrt(mean + eps);
  for (int64_t d = 0; d < D; ++d) {
    const float h = bf16_to_float(float_to_bf16(bf16_to_float(row[d]) * r));
    o[d] = float_to_bf16(bf16_to_float(weight[d]) * h);
  }
}

}  // namespace

void rms_norm_bf16(const uint16_t* x, const uint16_t* weight, int64_t M, int64_t D, float eps, uint16_t* out) {
  check(x, weight, M, D, eps, out, "rms_norm_bf16");
  for (int64_t m = 0; m < M; ++m) norm_row(x + m * D, weight, D, eps, out + m * D);
}

void add_rms_norm_bf16(const uint16_t* x, const uint16_t* delta, const uint16_t* weight, int64_t M, int64_t D,
                       float eps, uint16_t* sum, uint16_t* out) {
  check(x, weight, M, D, eps, out, "add_rms_norm_bf16");
  if (delta == nullptr || sum == nullptr) throw std::invalid_argument("add_rms_norm_bf16: null pointer");
  if (out == x || out == delta || out == sum) throw std::invalid_argument("add_rms_norm_bf16: out must not alias x, delta or sum");
  for (int64_t m = 0; m < M; ++m) {
    const uint16_t* a = x + m * D;
    const uint16_t* b = delta + m * D;
    uint16_t* s = sum + m * D;
    for (int64_t d = 0; d < D; ++d) s[d] = float_to_bf16(bf16_to_float(a[d]) + bf16_to_float(b[d]));
    norm_row(s, weight, D, eps, out + m * D);
  }
}

}  // namespace saguaro
