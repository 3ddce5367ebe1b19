// saguaro._core entry point of SwiGLU's silu(gate) * up on bf16 rows (silu_mul.hpp). Arguments are
// validated here so a direct call raises ValueError; the GIL is released while it runs.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "dlpack_tensor.hpp"
#include "saguaro/cpu_features.hpp"
#include "saguaro/silu_mul.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

void bind_swiglu(py::module_& m) {
  m.def(
      "silu_mul_bf16",
      [](py::handle gate_up, py::handle out) {
        auto gv = borrow_tensor(gate_up, "gate_up");
        gv.require_bf16({-1, -1});
        const int64_t M = gv.shape[0], I = gv.shape[1] / 2;
        if (M < 1 || I < 1 || gv.shape[1] % 2 != 0) gv.fail("needs at least one row and an even, nonzero width");
        auto ov = borrow_tensor(out, "out");
        ov.require_bf16({M, I});
        const CpuIsa isa = cpu_isa_selected();
        py::gil_scoped_release release;
        silu_mul_bf16(gv.data<uint16_t>(), M, I, ov.data<uint16_t>(), isa);
      },
      py::arg("gate_up"), py::arg("out"),
      "out[M, I] = bf16(bf16(silu(gate)) * up) for bf16 CPU gate_up [M, 2I] (gate, then up, in each row; "
      "C-contiguous); the path follows $SAGUARO_CPU_ISA, every path gives the same bits.");
}

}  // namespace saguaro::bindings
