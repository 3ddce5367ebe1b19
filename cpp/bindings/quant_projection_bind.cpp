// saguaro._core.QuantProjection (quant_projection.hpp): a whole quantized projection run by one call. A
// decode step makes ~200 projection calls; calling each segment's kernel from Python exported x, the
// weights and the output every time (~3 exports per segment, ~2.7 ms a token of the 1.5B's ~45 ms). Here
// the weights are borrowed once, at construction, and a call borrows only x and the output.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "quant_args.hpp"
#include "quant_projection.hpp"
#include "saguaro/quant_b16.hpp"
#include "saguaro/quant_q4k16.hpp"
#include "saguaro/quant_q6k16.hpp"
#include "saguaro/bf16_convert.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

QuantProjection::QuantProjection(int64_t k,
                                 const std::vector<std::tuple<py::object, int, int64_t, py::object>>& segments,
                                 py::object bias) {
  if (segments.empty()) throw py::value_error("QuantProjection: needs at least one segment");
  std::vector<QuantSegmentRef> refs;
  int64_t n = 0;
  for (const auto& [blocks, ggml_type, rows, packed] : segments) {
    const QuantType type = parse_type(ggml_type);
    held_.push_back(borrow_blocks(blocks, type, rows, k));
    QuantSegmentRef r{type, rows, held_.back().data<uint8_t>(), nullptr};
    if (!packed.is_none()) {
      int64_t bytes = 0;
      switch (type) {
        case QuantType::kQ4_K: bytes = q4k16_packed_bytes(rows, k); break;
        case QuantType::kQ6_K: bytes = q6k16_packed_bytes(rows, k); break;
        default: bytes = quant_b16_packed_bytes(type, rows, k); break;
      }
      held_.push_back(borrow_bytes(packed, "packed", bytes));
      r.packed = held_.back().data<uint8_t>();
    }
    n += rows;
    refs.push_back(r);
  }
  const float* b = nullptr;
  if (!bias.is_none()) {
    held_.push_back(borrow_tensor(bias, "bias"));
    held_.back().require_cpu();
    held_.back().require(DType::kFloat32, {n});
    b = held_.back().data<float>();
  }
  ref_.emplace(k, std::move(refs), b);
}

// out[M, n] = x[M, k] @ W^T (+ bias). x float32 or bfloat16 (C-contiguous); out float32 (rows at any
// stride) or bfloat16 (C-contiguous): a bf16 model's projection in one call, without the conversions
// around it as separate torch operators (~15 us each, ~450 of them a decode step of the 1.5B). The
// interleaved copies run where the selected path ($SAGUARO_CPU_ISA, read at each call) is AVX-512 or
// AVX2; otherwise every segment runs on its GGUF blocks on the selected path.
void QuantProjection::forward(py::handle x, py::handle out, int threads) const {
  const int64_t k = ref_->in_features(), n = ref_->out_features();
  auto xv = borrow_tensor(x, "x");
  xv.require_cpu();
  const bool x_bf16 = xv.is_bf16();
  if (x_bf16) xv.require_bf16({-1, k});
  else xv.require(DType::kFloat32, {-1, -1});
  const int64_t M = xv.shape[0];
  if (M < 1) xv.fail("needs at least one row");
  if (xv.shape[1] != k) xv.fail("expected " + std::to_string(k) + " columns, got " + std::to_string(xv.shape[1]));
  auto ov = borrow_tensor(out, "out");
  ov.require_cpu();
  const bool out_bf16 = ov.is_bf16();
  if (out_bf16) ov.require_bf16({M, n});
  const int64_t ldy = out_bf16 ? n : check_out(ov, M, n);
  check_threads(threads);
  const CpuIsa isa = cpu_isa_selected();
  py::gil_scoped_release release;
  if (x_bf16 && out_bf16) {
    ref_->forward_bf16(xv.data<uint16_t>(), M, ov.data<uint16_t>(), threads, isa);
    return;
  }
  // per calling thread (the SSD target and draft workers each have one): no allocation per call
  thread_local std::vector<float> x_buf, y_buf;
  const float* xp = xv.data<float>();
  if (x_bf16) {
    x_buf.resize(static_cast<size_t>(M * k));
    bf16_to_floats(xv.data<uint16_t>(), x_buf.data(), M * k);
    xp = x_buf.data();
  }
  if (out_bf16) {
    y_buf.resize(static_cast<size_t>(M * n));
    ref_->forward(xp, M, y_buf.data(), n, threads, isa);
    floats_to_bf16(y_buf.data(), ov.data<uint16_t>(), M * n);
  } else {
    ref_->forward(xp, M, ov.data<float>(), ldy, threads, isa);
  }
}


void bind_quant_projection(py::module_& m) {
  py::class_<QuantProjection>(m, "QuantProjection",
                              "A quantized projection's row segments (GGUF blocks, optional interleaved copies), "
                              "borrowed once and run by one call.")
      .def(py::init<int64_t, const std::vector<std::tuple<py::object, int, int64_t, py::object>>&, py::object>(),
           py::arg("k"), py::arg("segments"), py::arg("bias") = py::none())
      .def("forward", &QuantProjection::forward, py::arg("x"), py::arg("out"), py::arg("threads") = 1,
           "out[M, n] = x[M, k] @ W^T + bias. x float32 or bfloat16; out float32 (may be a column slice at any "
           "row stride) or bfloat16 (contiguous: the float32 result rounded to nearest even, as .to() does).")
      .def_property_readonly("out_features", &QuantProjection::out_features)
      .def_property_readonly("in_features", &QuantProjection::in_features);
}

}  // namespace saguaro::bindings
