// saguaro._core entry point of the bf16 RMSNorm (rms_norm.hpp). Arguments are validated here so a direct
// call raises ValueError, never crashes; the GIL is released while it runs.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "dlpack_tensor.hpp"
#include "saguaro/rms_norm.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

void bind_norm(py::module_& m) {
  m.def(
      "rms_norm_bf16",
      [](py::handle x, py::handle weight, float eps, py::handle out) {
        auto xv = borrow_tensor(x, "x");
        xv.require_bf16({-1, -1});
        const int64_t M = xv.shape[0], D = xv.shape[1];
        if (M < 1 || D < 1) xv.fail("needs at least one row and one column");
        auto wv = borrow_tensor(weight, "weight");
        wv.require_bf16({D});
        auto ov = borrow_tensor(out, "out");
        ov.require_bf16({M, D});
        if (!(eps > 0.f)) throw py::value_error("eps: must be > 0");
        py::gil_scoped_release release;
        rms_norm_bf16(xv.data<uint16_t>(), wv.data<uint16_t>(), M, D, eps, ov.data<uint16_t>());
      },
      py::arg("x"), py::arg("weight"), py::arg("eps"), py::arg("out"),
      "out[M, D] = bf16(weight * bf16(x * rsqrt(mean(x^2) + eps))) for bf16 CPU x [M, D] and weight [D] "
      "(C-contiguous); the squares summed in double.");

  m.def(
      "add_rms_norm_bf16",
      [](py::handle x, py::handle delta, py::handle weight, float eps, py::handle sum, py::handle out) {
        auto xv = borrow_tensor(x, "x");
        xv.require_bf16({-1, -1});
        const int64_t M = xv.shape[0], D = xv.shape[1];
        if (M < 1 || D < 1) xv.fail("needs at least one row and one column");
        auto dv = borrow_tensor(delta, "delta");
        dv.require_bf16({M, D});
        auto wv = borrow_tensor(weight, "weight");
        wv.require_bf16({D});
        auto sv = borrow_tensor(sum, "sum");
        sv.require_bf16({M, D});
        auto ov = borrow_tensor(out, "out");
        ov.require_bf16({M, D});
        if (!(eps > 0.f)) throw py::value_error("eps: must be > 0");
        if (ov.ptr == xv.ptr || ov.ptr == dv.ptr || ov.ptr == sv.ptr) ov.fail("must not be x, delta or sum");
        py::gil_scoped_release release;
        add_rms_norm_bf16(xv.data<uint16_t>(), dv.data<uint16_t>(), wv.data<uint16_t>(), M, D, eps,
                          sv.data<uint16_t>(), ov.data<uint16_t>());
      },
      py::arg("x"), py::arg("delta"), py::arg("weight"), py::arg("eps"), py::arg("sum"), py::arg("out"),
      "sum[M, D] = bf16(x + delta); out = rms_norm_bf16(sum, weight, eps): a residual add and the next norm in "
      "one call (bf16 CPU, C-contiguous; sum may be x or delta, out may not).");
}

}  // namespace saguaro::bindings
