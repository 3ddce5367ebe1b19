// RMSNorm of bf16 rows (include/saguaro/rms_norm.hpp).
#include "saguaro/rms_norm.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "saguaro/small_gemm.hpp"  // bf16 <-> float

namespace saguaro {

void rms_norm_bf16(const uint16_t* x, const uint16_t* weight, int64_t M, int64_t D, float eps, uint16_t* out) {
  if (M < 1 || D < 1)
    throw std::invalid_argument("rms_norm_bf16: needs M >= 1 and D >= 1, got " + std::to_string(M) + " x " +
                                std::to_string(D));
  if (x == nullptr || weight == nullptr || out == nullptr) throw std::invalid_argument("rms_norm_bf16: null pointer");
  if (!(eps > 0.f)) throw std::invalid_argument("rms_norm_bf16: eps must be > 0, got " + std::to_string(eps));
  for (int64_t m = 0; m < M; ++m) {
    const uint16_t* row = x + m * D;
    double sum = 0.0;  // in order, in double: exact enough that the order no longer shows in fp32
    for (int64_t d = 0; d < D; ++d) {
      const double v = bf16_to_float(row[d]);
      sum += v * v;
    }
    const float mean = static_cast<float>(sum / static_cast<double>(D));
    const float r = 1.f / std::sqrt(mean + eps);
    uint16_t* o = out + m * D;
    for (int64_t d = 0; d < D; ++d) {
      const float h = bf16_to_float(float_to_bf16(bf16_to_float(row[d]) * r));
      o[d] = float_to_bf16(bf16_to_float(weight[d]) * h);
    }
  }
}

}  // namespace saguaro
