// saguaro._core.DecoderChain: a quantized bf16 decoder's layers run over the new rows of its sequences in one
// call (decoder_chain.hpp). The norm weights and the layers' QuantProjection objects are held from
// construction; a call borrows only x, cos / sin, the groups' KV buffers and slots, and the outputs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "dlpack_tensor.hpp"
#include "quant_args.hpp"  // check_threads
#include "quant_projection.hpp"
#include "saguaro/decoder_chain.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

using LayerArgs = std::tuple<py::object, py::object, py::object, py::object, py::object, py::object>;

class DecoderChain {
 public:
  // layers: (attn_norm weight, mlp_norm weight, qkv, out, gate_up, down) per layer: bf16 [hidden] weights
  // and QuantProjection objects.
  DecoderChain(const std::vector<LayerArgs>& layers, int64_t hidden, int64_t heads, int64_t kv_heads,
               int64_t head_dim, int64_t intermediate, float eps)
      : shape_{hidden, heads, kv_heads, head_dim, intermediate, eps} {
    if (layers.empty()) throw py::value_error("layers: needs at least one layer");
    if (hidden < 1 || heads < 1 || kv_heads < 1 || heads % kv_heads != 0 || head_dim < 2 || head_dim % 2 != 0 ||
        intermediate < 1)
      throw py::value_error("DecoderChain: bad shape (hidden, heads, kv_heads, head_dim, intermediate)");
    if (!(eps > 0.f)) throw py::value_error("eps: must be > 0");
    for (const auto& [attn_norm, mlp_norm, qkv, out, gate_up, down] : layers) {
      DecoderChainLayer l{};
      norms_.push_back(borrow_tensor(attn_norm, "attn_norm"));
      norms_.back().require_bf16({hidden});
      l.attn_norm = norms_.back().data<uint16_t>();
      norms_.push_back(borrow_tensor(mlp_norm, "mlp_norm"));
      norms_.back().require_bf16({hidden});
      l.mlp_norm = norms_.back().data<uint16_t>();
      l.qkv = &projection(qkv, "qkv");
      l.out = &projection(out, "out");
      l.gate_up = &projection(gate_up, "gate_up");
      l.down = &projection(down, "down");
      layers_.push_back(l);
    }
    const auto& l0 = layers_.front();
    if (l0.qkv->in_features() != hidden || l0.qkv->out_features() != (heads + 2 * kv_heads) * head_dim ||
        l0.out->in_features() != heads * head_dim || l0.gate_up->out_features() != 2 * intermediate ||
        l0.down->in_features() != intermediate)
      throw py::value_error("layers: the projections do not fit (hidden, heads, kv_heads, head_dim, intermediate)");
  }

  // groups: (row_start, row_end, kv, start, branches) per sequence, covering x's rows in order; branches
  // None (a causal chain) or (prefix, own_first, own_stride, own_count) with int64 [rows] tensors.
  void forward(py::handle x, py::handle cos, py::handle sin, const py::list& groups, py::handle final_norm,
               py::handle normed, int threads) const {
    const int64_t hidden = shape_.hidden, D = shape_.head_dim;
    auto xv = borrow_tensor(x, "x");
    xv.require_bf16({-1, hidden});
    const int64_t n = xv.shape[0];
    if (n < 1) xv.fail("needs at least one row");
    auto cv = borrow_tensor(cos, "cos");
    cv.require_bf16({n, D});
    auto sv = borrow_tensor(sin, "sin");
    sv.require_bf16({n, D});
    std::vector<TensorView> held;  // the groups' tensors, alive for the call
    held.reserve(3 * groups.size());
    std::vector<DecoderChainGroup> gs;
    const auto layers = static_cast<int64_t>(layers_.size());
    for (const auto& item : groups) {
      const auto t = item.cast<py::tuple>();
      if (t.size() != 5) throw py::value_error("groups: expected (row_start, row_end, kv, start, branches) tuples");
      DecoderChainGroup g;
      g.row_start = t[0].cast<int64_t>();
      g.rows = t[1].cast<int64_t>() - g.row_start;
      held.push_back(borrow_tensor(t[2], "kv"));
      held.back().require_bf16({layers, 2, shape_.kv_heads, -1, D});
      g.kv = held.back().data<uint16_t>();
      g.capacity = held.back().shape[3];
      g.start = t[3].cast<int64_t>();
      if (g.rows < 1 || g.start < 0 || g.start + g.rows > g.capacity)
        throw py::value_error("start: start + rows must be <= the KV capacity " + std::to_string(g.capacity) +
                              ", got start=" + std::to_string(g.start) + " rows=" + std::to_string(g.rows));
      if (!t[4].is_none()) {
        const auto b = t[4].cast<py::tuple>();
        if (b.size() != 4) throw py::value_error("branches: expected (prefix, own_first, own_stride, own_count)");
        for (int j = 0; j < 2; ++j) {
          held.push_back(borrow_tensor(b[j], j == 0 ? "prefix" : "own_first"));
          held.back().require_cpu();
          held.back().require(DType::kInt64, {g.rows});
        }
        g.prefix = held[held.size() - 2].data<int64_t>();
        g.own_first = held.back().data<int64_t>();
        g.own_stride = b[2].cast<int64_t>();
        g.own_count = b[3].cast<int64_t>();
      }
      gs.push_back(g);
    }
    const uint16_t* fn = nullptr;
    uint16_t* out = nullptr;
    TensorView fv, ov;
    if (!final_norm.is_none()) {
      fv = borrow_tensor(final_norm, "final_norm");
      fv.require_bf16({hidden});
      ov = borrow_tensor(normed, "normed");
      ov.require_bf16({n, hidden});
      fn = fv.data<uint16_t>();
      out = ov.data<uint16_t>();
    }
    check_threads(threads);
    const CpuIsa isa = cpu_isa_selected();
    py::gil_scoped_release release;  // std::invalid_argument (groups that miss rows, a bad slot) -> ValueError
    decoder_chain_bf16(layers_, shape_, xv.data<uint16_t>(), n, cv.data<uint16_t>(), sv.data<uint16_t>(), gs, fn, out,
                       threads, isa);
  }

 private:
  const QuantProjectionRef& projection(const py::object& obj, const char* name) {
    if (!py::isinstance<QuantProjection>(obj))
      throw py::value_error(std::string(name) + ": expected a saguaro._core.QuantProjection");
    held_.push_back(obj);  // keeps the projection (and the weights it borrows) alive
    return obj.cast<const QuantProjection&>().ref();
  }

  DecoderChainShape shape_;
  std::vector<DecoderChainLayer> layers_;
  std::vector<TensorView> norms_;
  std::vector<py::object> held_;
};

}  // namespace

void bind_decoder_chain(py::module_& m) {
  py::class_<DecoderChain>(m, "DecoderChain",
                           "A quantized bf16 decoder's layers (norm weights and QuantProjection objects), run over "
                           "one sequence's new rows in one call.")
      .def(py::init<const std::vector<LayerArgs>&, int64_t, int64_t, int64_t, int64_t, int64_t, float>(),
           py::arg("layers"), py::arg("hidden"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"),
           py::arg("intermediate"), py::arg("eps"))
      .def("forward", &DecoderChain::forward, py::arg("x"), py::arg("cos"), py::arg("sin"), py::arg("groups"),
           py::arg("final_norm"), py::arg("normed"), py::arg("threads") = 1,
           "Run every layer over x [n, hidden] (bf16, updated in place: the residual stream after the last layer); "
           "cos / sin [n, head_dim]; groups (row_start, row_end, kv [layers, 2, kv_heads, capacity, head_dim], start, "
           "branches None or (prefix, own_first, own_stride, own_count)) cover the rows in order. final_norm None, "
           "or a weight [hidden]: then normed [n, hidden] receives the final norm of the output.");
}

}  // namespace saguaro::bindings
