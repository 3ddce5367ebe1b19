// A quantized projection's segments run as one call (include/saguaro/quant_projection.hpp).
#include "saguaro/quant_projection.hpp"

#include <stdexcept>
#include <string>

#include "saguaro/bf16_convert.hpp"
#include "saguaro/quant_b16.hpp"
#include "saguaro/quant_q4k16.hpp"
#include "saguaro/quant_q6k16.hpp"

namespace saguaro {

QuantProjectionRef::QuantProjectionRef(int64_t k, std::vector<QuantSegmentRef> segments, const float* bias)
    : k_(k), segments_(std::move(segments)), bias_(bias) {
  if (segments_.empty()) throw std::invalid_argument("QuantProjection: needs at least one segment");
  if (k_ < 1) throw std::invalid_argument("QuantProjection: k must be >= 1, got " + std::to_string(k_));
  for (const auto& s : segments_) {
    n_ += s.rows;
    any_packed_ = any_packed_ || s.packed != nullptr;
  }
}

void QuantProjectionRef::forward(const float* x, int64_t M, float* y, int64_t ldy, int threads, CpuIsa isa) const {
  const bool interleaved = any_packed_ && isa >= CpuIsa::kAvx2;
  float* out = y;
  for (const auto& s : segments_) {
    if (interleaved && s.packed) {
      if (s.type == QuantType::kQ4_K) q4k16_gemm(s.packed, s.rows, k_, x, M, out, ldy, threads, isa);
      else if (s.type == QuantType::kQ6_K) q6k16_gemm(s.packed, s.rows, k_, x, M, out, ldy, threads, isa);
      else quant_b16_gemm(s.type, s.packed, s.rows, k_, x, M, out, ldy, threads, isa);
    } else {
      quant_gemm(s.type, s.blocks, s.rows, k_, x, M, out, ldy, threads, isa);
    }
    out += s.rows;
  }
  if (bias_) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < n_; ++j) y[m * ldy + j] += bias_[j];
  }
}

void QuantProjectionRef::forward_bf16(const uint16_t* x, int64_t M, uint16_t* y, int threads, CpuIsa isa) const {
  thread_local std::vector<float> x_buf, y_buf;  // no allocation per call once grown
  x_buf.resize(static_cast<size_t>(M * k_));
  y_buf.resize(static_cast<size_t>(M * n_));
  bf16_to_floats(x, x_buf.data(), M * k_);
  forward(x_buf.data(), M, y_buf.data(), n_, threads, isa);
  floats_to_bf16(y_buf.data(), y, M * n_);
}

}  // namespace saguaro
