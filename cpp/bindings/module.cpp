#include <pybind11/pybind11.h>

#include "saguaro/build_info.hpp"

namespace py = pybind11;

namespace saguaro::bindings {
// Each binding file registers one concept; they are defined beside this file.
void bind_config(py::module_& m);
void bind_decoder_chain(py::module_& m);
void bind_kernels(py::module_& m);
void bind_linear(py::module_& m);
void bind_attention(py::module_& m);
void bind_norm(py::module_& m);
void bind_runtime(py::module_& m);
void bind_schedule(py::module_& m);
void bind_swiglu(py::module_& m);
void bind_wire(py::module_& m);
}  // namespace saguaro::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "saguaro C++ core: verification / fan-out kernels, speculation cache, SSD runtime";
  m.def("build_info", []() {
    auto info = saguaro::build_info();
    py::dict d;
    d["version"] = info.version;
    d["cuda_compiled"] = info.cuda_compiled;
    d["cuda_device_count"] = info.cuda_device_count;
    d["cuda_error"] = info.cuda_error;
    return d;
  });
  saguaro::bindings::bind_config(m);
  saguaro::bindings::bind_decoder_chain(m);
  saguaro::bindings::bind_kernels(m);
  saguaro::bindings::bind_linear(m);
  saguaro::bindings::bind_attention(m);
  saguaro::bindings::bind_norm(m);
  saguaro::bindings::bind_runtime(m);
  saguaro::bindings::bind_schedule(m);
  saguaro::bindings::bind_swiglu(m);
  saguaro::bindings::bind_wire(m);
}
