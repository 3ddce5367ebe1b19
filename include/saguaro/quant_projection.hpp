#pragma once
// A quantized projection run as one: W [n, k] is row segments of GGUF blocks (Q4_K, Q6_K, Q5_0, Q8_0),
// each with an optional 16-column interleaved copy, stacked in order (a fused q/k/v or gate/up whose GGUF
// tensors use different formats); y = x W^T + bias. The segments' memory belongs to the caller (the
// Python QuantLinear's tensors, borrowed by cpp/bindings/quant_projection_bind.cpp).
#include <cstdint>
#include <vector>

#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_gemm.hpp"

namespace saguaro {

struct QuantSegmentRef {
  QuantType type;
  int64_t rows;
  const uint8_t* blocks;            // rows * quant_row_bytes(type, k) GGUF bytes
  const uint8_t* packed = nullptr;  // the x16 interleaved copy (q4k16 / q6k16 / quant_b16), or null
};

class QuantProjectionRef {
 public:
  // bias: null or n floats. Throws std::invalid_argument for no segments or k < 1.
  QuantProjectionRef(int64_t k, std::vector<QuantSegmentRef> segments, const float* bias);

  int64_t in_features() const { return k_; }
  int64_t out_features() const { return n_; }

  // y[M, n] (row stride ldy) = x[M, k] @ W^T + bias in fp32. The interleaved copies run where `isa` is
  // AVX2 or AVX-512; otherwise every segment runs on its GGUF blocks on `isa`'s path.
  void forward(const float* x, int64_t M, float* y, int64_t ldy, int threads, CpuIsa isa) const;

  // The same for bf16 rows: x widened exactly, the fp32 result rounded to nearest even (as .to(bfloat16)).
  // Scratch is per calling thread, so concurrent callers (the SSD target and draft) never share it.
  void forward_bf16(const uint16_t* x, int64_t M, uint16_t* y, int threads, CpuIsa isa) const;

 private:
  int64_t k_, n_ = 0;
  std::vector<QuantSegmentRef> segments_;
  const float* bias_;
  bool any_packed_ = false;
};

}  // namespace saguaro
