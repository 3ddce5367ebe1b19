#pragma once
// A Python callable run on a worker thread (a thread_init hook); destroyed with the GIL held,
// wherever the last copy dies.
#include <pybind11/pybind11.h>

#include <functional>
#include <memory>

namespace saguaro::bindings {

inline std::function<void()> worker_hook(const pybind11::object& fn) {
  if (fn.is_none()) return {};
  auto held = std::shared_ptr<pybind11::object>(new pybind11::object(fn), [](pybind11::object* o) {
    pybind11::gil_scoped_acquire gil;
    delete o;
  });
  return [held] {
    pybind11::gil_scoped_acquire gil;
    (*held)();
  };
}

}  // namespace saguaro::bindings
