#pragma once
// A Python model adapter (contracts §3) as a saguaro::Model. Every call takes the GIL for the
// Python part only; the returned torch tensor is borrowed through DLPack without a copy and kept
// alive by the Logits owner, whose deleter takes the GIL. A Python exception becomes
// std::invalid_argument (ValueError) or std::runtime_error (anything else) carrying its message,
// so the runtime can fail just the affected request.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dlpack_tensor.hpp"
#include "saguaro/model.hpp"

namespace saguaro::bindings {

namespace py = pybind11;

class PyModel final : public Model {
 public:
  // Call with the GIL held.
  PyModel(py::object adapter, std::string role) : role_(std::move(role)) {
    adapter_ = std::make_unique<py::object>(std::move(adapter));
    for (const char* name : {"vocab_size", "max_context", "eos_token_ids", "prefill", "extend", "tree_step", "truncate",
                             "length", "release"})
      if (!py::hasattr(*adapter_, name))
        throw py::value_error(role_ + " adapter has no attribute '" + name + "' (see the adapter contract)");
    vocab_ = adapter_->attr("vocab_size").cast<int64_t>();
    max_context_ = adapter_->attr("max_context").cast<int64_t>();
    eos_ = adapter_->attr("eos_token_ids").cast<std::vector<int32_t>>();
    if (vocab_ < 1) throw py::value_error(role_ + " adapter: vocab_size must be >= 1");
    if (max_context_ < 2) throw py::value_error(role_ + " adapter: max_context must be >= 2");
  }
  ~PyModel() override {
    py::gil_scoped_acquire gil;
    adapter_.reset();
  }

  int64_t vocab_size() const override { return vocab_; }
  int64_t max_context() const override { return max_context_; }
  std::vector<int32_t> eos_token_ids() const override { return eos_; }

  Logits prefill(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& prompts) override {
    return call_logits("prefill", [&] { return adapter_->attr("prefill")(ids, prompts); });
  }
  Logits extend(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& tokens) override {
    return call_logits("extend", [&] { return adapter_->attr("extend")(ids, tokens); });
  }
  Logits tree_step(const std::vector<int64_t>& ids, const std::vector<int64_t>& visible,
                   const std::vector<int32_t>& tokens, int32_t depth) override {
    return call_logits("tree_step", [&] { return adapter_->attr("tree_step")(ids, visible, tokens, depth); });
  }
  void truncate(int64_t id, int64_t length) override {
    call("truncate", [&] { adapter_->attr("truncate")(id, length); });
  }
  int64_t length(int64_t id) override {
    int64_t n = 0;
    call("length", [&] { n = adapter_->attr("length")(id).cast<int64_t>(); });
    return n;
  }
  void release(int64_t id) override {
    call("release", [&] { adapter_->attr("release")(id); });
  }

  // One interpreter thread state per worker thread for its whole life (creating one per call
  // costs microseconds; docs/architecture.md).
  void attach_thread() override {
    py::gil_scoped_acquire gil;
    gil.inc_ref();
  }
  void detach_thread() override {
    py::gil_scoped_acquire gil;
    gil.dec_ref();
  }

 private:
  struct Borrowed {
    py::object tensor;
    TensorView view;
  };

  template <class F>
  void call(const char* what, F&& f) {
    py::gil_scoped_acquire gil;
    try {
      f();
    } catch (py::error_already_set& e) {
      rethrow(what, e);
    } catch (py::cast_error& e) {
      throw std::runtime_error(role_ + " adapter " + what + " returned an unexpected type: " + e.what());
    }
  }

  template <class F>
  Logits call_logits(const char* what, F&& f) {
    py::gil_scoped_acquire gil;
    try {
      auto held = std::shared_ptr<Borrowed>(new Borrowed{}, [](Borrowed* b) {
        py::gil_scoped_acquire g;
        delete b;
      });
      held->tensor = f();
      held->view = borrow_tensor(held->tensor, role_ + " " + what + " logits");
      held->view.require(DType::kFloat32, {-1, vocab_});
      Logits out;
      if (held->view.is_cuda()) {
        // Device-resident (docs/contracts.md §3): the runtime's kernels read the rows where they are,
        // ordered after the forward on the stream the adapter ran on.
        out.device_type = Logits::kCuda;
        out.device_id = held->view.device_id;
        out.stream = current_stream(held->tensor);
      } else {
        held->view.require_cpu();
      }
      out.data = held->view.data<float>();
      out.rows = held->view.shape[0];
      out.vocab = vocab_;
      out.owner = std::move(held);
      return out;
    } catch (py::error_already_set& e) {
      rethrow(what, e);
    } catch (py::value_error& e) {
      throw std::invalid_argument(e.what());
    }
  }

  // The producing framework's current CUDA stream for the tensor's device (torch's, which is per
  // thread); null, the default stream, for other producers.
  static void* current_stream(const py::object& tensor) {
    if (!py::hasattr(tensor, "device")) return nullptr;
    py::object torch = py::module_::import("torch");
    const auto raw = torch.attr("cuda").attr("current_stream")(tensor.attr("device")).attr("cuda_stream").cast<uintptr_t>();
    return reinterpret_cast<void*>(raw);
  }

  [[noreturn]] void rethrow(const char* what, py::error_already_set& e) const {
    const std::string message = role_ + " adapter " + what + " raised " + e.what();
    if (e.matches(PyExc_ValueError)) throw std::invalid_argument(message);
    throw std::runtime_error(message);
  }

  std::unique_ptr<py::object> adapter_;
  std::string role_;
  int64_t vocab_ = 0;
  int64_t max_context_ = 0;
  std::vector<int32_t> eos_;
};

}  // namespace saguaro::bindings
