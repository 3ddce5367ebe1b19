// saguaro._core.QuantProjection: a whole quantized projection (QuantLinear's row segments of GGUF blocks and
// their interleaved copies) run by one call. A decode step makes ~200 projection calls; calling each
// segment's kernel from Python exported x, the weights and the output through __dlpack__ every time
// (~3 exports per segment, ~2.7 ms a token of the 1.5B's ~45 ms). Here the weights are borrowed once, at
// construction, and a call borrows only x and the output.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "quant_args.hpp"
#include "saguaro/quant_b16.hpp"
#include "saguaro/quant_q4k16.hpp"
#include "saguaro/quant_q6k16.hpp"
#include "saguaro/bf16_convert.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

class QuantProjection {
 public:
  // segments: (blocks, ggml_type, rows, packed or None) in output-row order; k: in_features; bias: None or
  // float32 [n], added to every output row.
  QuantProjection(int64_t k, const std::vector<std::tuple<py::object, int, int64_t, py::object>>& segments,
                  py::object bias)
      : k_(k) {
    if (segments.empty()) throw py::value_error("QuantProjection: needs at least one segment");
    for (const auto& [blocks, ggml_type, rows, packed] : segments) {
      Segment s{parse_type(ggml_type), rows, borrow_blocks(blocks, parse_type(ggml_type), rows, k), std::nullopt};
      if (!packed.is_none()) {
        int64_t bytes = 0;
        switch (s.type) {
          case QuantType::kQ4_K: bytes = q4k16_packed_bytes(rows, k); break;
          case QuantType::kQ6_K: bytes = q6k16_packed_bytes(rows, k); break;
          default: bytes = quant_b16_packed_bytes(s.type, rows, k); break;
        }
        s.packed = borrow_bytes(packed, "packed", bytes);
        any_packed_ = true;
      }
      n_ += rows;
      segments_.push_back(std::move(s));
    }
    if (!bias.is_none()) {
      bias_ = borrow_tensor(bias, "bias");
      bias_->require_cpu();
      bias_->require(DType::kFloat32, {n_});
    }
  }

  // out[M, n] = x[M, k] @ W^T (+ bias). x float32 or bfloat16 (C-contiguous); out float32 (rows at any
  // stride) or bfloat16 (C-contiguous): a bf16 model's projection in one call, without the conversions
  // around it as separate torch operators (~15 us each, ~450 of them a decode step of the 1.5B). The
  // interleaved copies run where the selected path ($SAGUARO_CPU_ISA, read at each call) is AVX-512 or
  // AVX2; otherwise every segment runs on its GGUF blocks on the selected path.
  void forward(py::handle x, py::handle out, int threads) const {
    auto xv = borrow_tensor(x, "x");
    xv.require_cpu();
    const bool x_bf16 = xv.is_bf16();
    if (x_bf16) xv.require_bf16({-1, k_});
    else xv.require(DType::kFloat32, {-1, -1});
    const int64_t M = xv.shape[0];
    if (M < 1) xv.fail("needs at least one row");
    if (xv.shape[1] != k_) xv.fail("expected " + std::to_string(k_) + " columns, got " + std::to_string(xv.shape[1]));
    auto ov = borrow_tensor(out, "out");
    ov.require_cpu();
    const bool out_bf16 = ov.is_bf16();
    if (out_bf16) ov.require_bf16({M, n_});
    const int64_t ldy = out_bf16 ? n_ : check_out(ov, M, n_);
    check_threads(threads);
    const CpuIsa isa = cpu_isa_selected();
    const bool interleaved = any_packed_ && isa >= CpuIsa::kAvx2;
    py::gil_scoped_release release;
    // per calling thread (the SSD target and draft workers each have one): no allocation per call
    thread_local std::vector<float> x_buf, y_buf;
    const float* xp = nullptr;
    if (x_bf16) {
      x_buf.resize(static_cast<size_t>(M * k_));
      bf16_to_floats(xv.data<uint16_t>(), x_buf.data(), M * k_);
      xp = x_buf.data();
    } else {
      xp = xv.data<float>();
    }
    float* y0 = nullptr;
    if (out_bf16) {
      y_buf.resize(static_cast<size_t>(M * n_));
      y0 = y_buf.data();
    } else {
      y0 = ov.data<float>();
    }
    float* y = y0;
    for (const Segment& s : segments_) {
      if (interleaved && s.packed) {
        const uint8_t* p = s.packed->data<uint8_t>();
        if (s.type == QuantType::kQ4_K) q4k16_gemm(p, s.rows, k_, xp, M, y, ldy, threads, isa);
        else if (s.type == QuantType::kQ6_K) q6k16_gemm(p, s.rows, k_, xp, M, y, ldy, threads, isa);
        else quant_b16_gemm(s.type, p, s.rows, k_, xp, M, y, ldy, threads, isa);
      } else {
        quant_gemm(s.type, s.blocks.data<uint8_t>(), s.rows, k_, xp, M, y, ldy, threads, isa);
      }
      y += s.rows;
    }
    if (bias_) {
      const float* b = bias_->data<float>();
      for (int64_t m = 0; m < M; ++m)
        for (int64_t j = 0; j < n_; ++j) y0[m * ldy + j] += b[j];
    }
    if (out_bf16) {
      floats_to_bf16(y0, ov.data<uint16_t>(), M * n_);
    }
  }

  int64_t out_features() const { return n_; }

 private:
  struct Segment {
    QuantType type;
    int64_t rows;
    TensorView blocks;                  // holds the borrowed tensor alive
    std::optional<TensorView> packed;
  };
  int64_t k_, n_ = 0;
  bool any_packed_ = false;
  std::vector<Segment> segments_;
  std::optional<TensorView> bias_;
};

}  // namespace

void bind_quant_projection(py::module_& m) {
  py::class_<QuantProjection>(m, "QuantProjection",
                              "A quantized projection's row segments (GGUF blocks, optional interleaved copies), "
                              "borrowed once and run by one call.")
      .def(py::init<int64_t, const std::vector<std::tuple<py::object, int, int64_t, py::object>>&, py::object>(),
           py::arg("k"), py::arg("segments"), py::arg("bias") = py::none())
      .def("forward", &QuantProjection::forward, py::arg("x"), py::arg("out"), py::arg("threads") = 1,
           "out[M, n] = x[M, k] @ W^T + bias. x float32 or bfloat16; out float32 (may be a column slice at any "
           "row stride) or bfloat16 (contiguous: the float32 result rounded to nearest even, as .to() does).")
      .def_property_readonly("out_features", &QuantProjection::out_features);
}

}  // namespace saguaro::bindings
