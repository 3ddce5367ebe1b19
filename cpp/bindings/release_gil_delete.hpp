#pragma once
// A unique_ptr holder for bound objects whose destructor joins worker threads (Runtime, DraftHost):
// the GIL is released while it runs, since those workers may need the GIL to finish.
#include <pybind11/pybind11.h>

#include <memory>

namespace saguaro::bindings {

template <class T>
struct ReleaseGilDelete {
  void operator()(T* object) const {
    pybind11::gil_scoped_release release;
    delete object;
  }
};

template <class T>
using GilReleasingHolder = std::unique_ptr<T, ReleaseGilDelete<T>>;

}  // namespace saguaro::bindings
