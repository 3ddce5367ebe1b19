// Argument checks shared by the quantized kernels' bindings (quant_bind.cpp, quant_projection_bind.cpp):
// each turns a bad argument into a ValueError that names it, so a direct call never crashes.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "dlpack_tensor.hpp"
#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_gemm.hpp"

namespace saguaro::bindings {

namespace py = pybind11;

inline QuantType parse_type(int ggml_type) {
  if (!quant_type_supported(ggml_type))
    throw py::value_error("ggml_type: " + std::to_string(ggml_type) +
                          " is not supported by the quantized kernels (Q4_K=12, Q6_K=14, Q5_0=6, Q8_0=8)");
  return static_cast<QuantType>(ggml_type);
}

// The weight blocks: a contiguous uint8 CPU tensor of exactly rows * quant_row_bytes(t, k) bytes.
inline TensorView borrow_blocks(py::handle blocks, QuantType t, int64_t rows, int64_t k) {
  auto v = borrow_tensor(blocks, "blocks");
  v.require_cpu();
  if (v.dtype != DType::kUInt8) v.fail("expected dtype uint8 (the GGUF tensor's raw bytes)");
  if (!v.contiguous()) v.fail("must be C-contiguous");
  const int64_t want = rows * quant_row_bytes(t, k);
  if (v.numel() != want)
    v.fail("expected " + std::to_string(want) + " bytes (" + std::to_string(rows) + " rows of " +
           std::to_string(k) + " " + quant_type_name(t) + " values), got " + std::to_string(v.numel()));
  return v;
}

// The activation rows: float32 [M, K] on the CPU, at least one row.
inline TensorView borrow_rows(py::handle x) {
  auto v = borrow_tensor(x, "x");
  v.require_cpu();
  v.require(DType::kFloat32, {-1, -1});
  if (v.shape[0] < 1) v.fail("needs at least one row");
  return v;
}

// A byte buffer of exactly `bytes` (a repacked matrix, or where a repack writes).
inline TensorView borrow_bytes(py::handle buffer, const char* name, int64_t bytes) {
  auto v = borrow_tensor(buffer, name);
  v.require_cpu();
  if (v.dtype != DType::kUInt8 || !v.contiguous() || v.numel() != bytes)
    v.fail("expected " + std::to_string(bytes) + " contiguous uint8 bytes");
  return v;
}

// out[M, n], float32. It may be a column slice of a wider matrix (the parts of a fused projection):
// rows at any stride >= n, unit stride along a row. Returns the row stride.
inline int64_t check_out(const TensorView& ov, int64_t M, int64_t n) {
  ov.require_cpu();
  if (ov.dtype != DType::kFloat32) ov.fail("expected dtype float32");
  if (ov.ndim() != 2 || ov.shape[0] != M || ov.shape[1] != n)
    ov.fail("expected shape [" + std::to_string(M) + ", " + std::to_string(n) + "], got " + ov.shape_str());
  const int64_t ldy = M == 1 ? n : ov.strides[0];
  if ((n > 1 && ov.strides[1] != 1) || ldy < n)
    ov.fail("rows must be contiguous and must not overlap (strides [>= n, 1])");
  return ldy;
}

inline void check_threads(int threads) {
  if (threads < 1) throw py::value_error("threads: must be >= 1, got " + std::to_string(threads));
}

// The SIMD path a call asks for ("auto": the selected one), refused when this CPU lacks it.
inline CpuIsa path_isa(const std::string& path) {
  const CpuIsa isa = path == "auto" ? cpu_isa_selected() : parse_cpu_isa(path);
  if (isa > cpu_isa_supported())
    throw py::value_error("path: '" + path + "' was asked for but this CPU supports only '" +
                          cpu_isa_name(cpu_isa_supported()) + "'");
  return isa;
}

}  // namespace saguaro::bindings
