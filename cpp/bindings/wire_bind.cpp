// saguaro._core.TargetWire / DraftHost: the two ends of a draft in another process. The frames are
// bytes; saguaro.distributed moves them over torch.distributed. Every call that can wait releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "py_model.hpp"
#include "release_gil_delete.hpp"
#include "saguaro/draft_host.hpp"
#include "saguaro/wire_format.hpp"
#include "saguaro/wire_transport.hpp"
#include "worker_hook.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

std::chrono::microseconds micros(double seconds) {
  if (!(seconds >= 0)) throw py::value_error("timeout must be >= 0 seconds");
  return std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

py::dict stats_dict(const WireStats& s) {
  py::dict d;
  d["frames_out"] = s.frames_out;
  d["frames_in"] = s.frames_in;
  d["bytes_out"] = s.bytes_out;
  d["bytes_in"] = s.bytes_in;
  d["entries_in"] = s.entries_in;
  d["q_requests"] = s.q_requests;
  d["q_answered"] = s.q_answered;
  d["q_bytes"] = s.q_bytes;
  d["q_held"] = s.q_held;
  d["failures"] = s.failures;
  d["epoch"] = s.epoch;
  return d;
}

// next_frame for either end: the frame as bytes, or None on timeout / closed.
template <class End>
py::object next_frame(End& end, double timeout_s) {
  std::string frame;
  bool got = false;
  {
    py::gil_scoped_release release;
    got = end.next_frame(frame, micros(timeout_s));
  }
  if (!got) return py::none();
  return py::bytes(frame);
}

template <class End>
void deliver(End& end, const py::buffer& frame) {
  py::buffer_info info = frame.request();
  if (info.ndim != 1 || info.itemsize != 1) throw py::value_error("a wire frame is a 1-D byte buffer");
  std::string_view view(static_cast<const char*>(info.ptr), static_cast<size_t>(info.size));
  py::gil_scoped_release release;
  end.deliver(view);
}

// The draft-server's host with a Python adapter; the GIL is released while it joins its worker.
using DraftHostHolder = GilReleasingHolder<DraftHost>;

}  // namespace

void bind_wire(py::module_& m) {
  py::register_exception<WireError>(m, "WireError", PyExc_ValueError);
  m.attr("WIRE_VERSION") = kWireVersion;

  py::class_<TargetWire, std::shared_ptr<TargetWire>>(
      m, "TargetWire", "The target's end of a remote draft: frames out with next_frame, frames in with deliver.")
      .def(py::init<>())
      .def("next_frame", &next_frame<TargetWire>, py::arg("timeout"),
           "The next frame for the draft (bytes), or None after timeout seconds or once closed.")
      .def("deliver", &deliver<TargetWire>, py::arg("frame"),
           "A frame from the draft (WireError when it does not decode).")
      .def("fail", &TargetWire::fail, py::arg("reason"), py::call_guard<py::gil_scoped_release>(),
           "The draft is gone: the target continues autoregressively (once per epoch).")
      .def("reconnected", &TargetWire::reconnected, py::call_guard<py::gil_scoped_release>(),
           "A new draft is attached (once failure_seen): the target re-sends every sequence and speculates again.")
      .def_property_readonly("down", &TargetWire::down)
      .def_property_readonly("failure_seen", &TargetWire::failure_seen,
                             "The target worker has taken the failure: a new draft may be attached.")
      .def_property_readonly("epoch", &TargetWire::epoch)
      .def("close", &TargetWire::close, py::call_guard<py::gil_scoped_release>())
      .def("stats", [](const TargetWire& w) { return stats_dict(w.stats()); });

  py::class_<DraftHost, DraftHostHolder>(m, "DraftHost",
                                         "A draft worker serving one remote target (saguaro draft-server).")
      .def(py::init([](py::object draft, std::vector<int> cores, py::object thread_init) {
             auto model = std::make_shared<PyModel>(std::move(draft), "draft");
             auto hook = worker_hook(thread_init);
             py::gil_scoped_release release;
             return DraftHostHolder(new DraftHost(std::move(model), std::move(cores), std::move(hook)));
           }),
           py::arg("draft"), py::kw_only(), py::arg("cores") = std::vector<int>{}, py::arg("thread_init") = py::none())
      .def("next_frame", &next_frame<DraftHost>, py::arg("timeout"))
      .def("deliver", &deliver<DraftHost>, py::arg("frame"))
      .def("close", &DraftHost::close, py::call_guard<py::gil_scoped_release>(),
           "Stop the worker; the target's sequences are released from the draft model.")
      .def("stats", [](const DraftHost& h) { return stats_dict(h.stats()); });
}

}  // namespace saguaro::bindings
