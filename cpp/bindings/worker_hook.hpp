#pragma once
// Python callables run on a worker thread (a thread_init hook, the target's thread-count hook);
// destroyed with the GIL held, wherever the last copy dies.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <memory>

namespace saguaro::bindings {

inline std::shared_ptr<pybind11::object> held_callable(const pybind11::object& fn) {
  return std::shared_ptr<pybind11::object>(new pybind11::object(fn), [](pybind11::object* o) {
    pybind11::gil_scoped_acquire gil;
    delete o;
  });
}

inline std::function<void()> worker_hook(const pybind11::object& fn) {
  if (fn.is_none()) return {};
  return [held = held_callable(fn)] {
    pybind11::gil_scoped_acquire gil;
    (*held)();
  };
}

// A hook that takes the worker's thread count (RuntimeConfig::set_target_threads).
inline std::function<void(int32_t)> threads_hook(const pybind11::object& fn) {
  if (fn.is_none()) return {};
  return [held = held_callable(fn)](int32_t threads) {
    pybind11::gil_scoped_acquire gil;
    (*held)(threads);
  };
}

}  // namespace saguaro::bindings
