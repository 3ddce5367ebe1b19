// saguaro._core.QuantProjection: a whole quantized projection (QuantLinear's row segments of GGUF blocks and
// their interleaved copies, include/saguaro/quant_projection.hpp) borrowed once, at construction; a call
// borrows only x and the output. Declared here so the decoder chain's binding runs the same objects.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "dlpack_tensor.hpp"
#include "saguaro/quant_projection.hpp"

namespace saguaro::bindings {

namespace py = pybind11;

class QuantProjection {
 public:
  // segments: (blocks, ggml_type, rows, packed or None) in output-row order; k: in_features; bias: None or
  // float32 [n], added to every output row.
  QuantProjection(int64_t k, const std::vector<std::tuple<py::object, int, int64_t, py::object>>& segments,
                  py::object bias);

  // out[M, n] = x[M, k] @ W^T (+ bias); see the binding's docstring.
  void forward(py::handle x, py::handle out, int threads) const;

  int64_t out_features() const { return ref_->out_features(); }
  int64_t in_features() const { return ref_->in_features(); }
  const QuantProjectionRef& ref() const { return *ref_; }

 private:
  std::vector<TensorView> held_;  // the borrowed blocks, interleaved copies and bias: alive while this is
  std::optional<QuantProjectionRef> ref_;
};

}  // namespace saguaro::bindings
