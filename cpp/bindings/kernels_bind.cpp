// saguaro._core kernel entry points. Every argument is validated here (dtype, shape, device,
// contiguity) so that a direct call into _core can raise ValueError but never crash; the kernels
// themselves validate values (parameters, token ids, NaN logits) and throw std::invalid_argument,
// which pybind11 turns into ValueError. The GIL is released while a kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dlpack_tensor.hpp"
#include "saguaro/fanout.hpp"
#include "saguaro/philox.hpp"
#include "saguaro/logits_processing.hpp"
#include "saguaro/sample.hpp"
#include "saguaro/verify.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

// Per-row processing parameters, each a CPU tensor of `rows` entries.
std::vector<ProcessParams> gather_params(const py::handle& temperature, const py::handle& top_k, const py::handle& top_p,
                                         const py::handle& saguaro_c, const py::handle& saguaro_topn, int64_t rows) {
  auto t = borrow_tensor(temperature, "temperature");
  auto k = borrow_tensor(top_k, "top_k");
  auto p = borrow_tensor(top_p, "top_p");
  auto c = borrow_tensor(saguaro_c, "saguaro_c");
  auto n = borrow_tensor(saguaro_topn, "saguaro_topn");
  for (auto* v : {&t, &p, &c}) v->require(DType::kFloat32, {rows}), v->require_cpu();
  for (auto* v : {&k, &n}) v->require(DType::kInt32, {rows}), v->require_cpu();
  std::vector<ProcessParams> out(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    out[r].temperature = t.data<float>()[r];
    out[r].top_k = k.data<int32_t>()[r];
    out[r].top_p = p.data<float>()[r];
    out[r].saguaro_c = c.data<float>()[r];
    out[r].saguaro_topn = n.data<int32_t>()[r];
  }
  return out;
}

std::vector<RowKey> gather_keys(const py::handle& seeds, const py::handle& streams, int64_t rows) {
  auto s = borrow_tensor(seeds, "seeds");
  auto t = borrow_tensor(streams, "streams");
  for (auto* v : {&s, &t}) v->require(DType::kInt64, {rows}), v->require_cpu();
  std::vector<RowKey> out(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    out[r].seed = static_cast<uint64_t>(s.data<int64_t>()[r]);  // int64 carries the uint64 bit pattern
    out[r].stream = static_cast<uint64_t>(t.data<int64_t>()[r]);
  }
  return out;
}

TensorView cpu_rows(const py::handle& obj, const char* name, DType dtype, std::vector<int64_t> shape) {
  auto v = borrow_tensor(obj, name);
  v.require(dtype, shape);
  v.require_cpu();
  return v;
}

// Big tensors: all on the CPU, or all on one CUDA device (then the build must have CUDA).
void require_device_group(const std::vector<const TensorView*>& views) {
  const TensorView& first = *views.front();
  if (!first.is_cpu() && !first.is_cuda()) first.fail("must be a CPU or CUDA tensor");
  for (const TensorView* v : views) v->require_same_device(first);
#ifndef SAGUARO_WITH_CUDA
  if (first.is_cuda())
    first.fail("is a CUDA tensor but this build of saguaro has no CUDA kernels (rebuild with -DSAGUARO_CUDA=ON, or pass CPU tensors)");
#endif
}

void check_dim(int64_t value, const char* what) {
  if (value < 1) throw py::value_error(std::string(what) + " must be >= 1");
}

}  // namespace

void bind_kernels(py::module_& m) {
  m.def("keyed_uniform", &keyed_uniform, py::arg("seed"), py::arg("stream"), py::arg("position"), py::arg("purpose"),
        "Philox4x32-10 keyed uniform in [0, 1) (docs/contracts.md §1).");

  m.def(
      "keyed_uniform_many",
      [](py::handle seeds, py::handle streams, py::handle positions, py::handle purposes, py::handle out) {
        auto o = borrow_tensor(out, "out");
        o.require(DType::kFloat64, {-1});
        o.require_cpu();
        const int64_t n = o.shape[0];
        auto s = cpu_rows(seeds, "seeds", DType::kInt64, {n});
        auto t = cpu_rows(streams, "streams", DType::kInt64, {n});
        auto p = cpu_rows(positions, "positions", DType::kInt64, {n});
        auto u = cpu_rows(purposes, "purposes", DType::kInt64, {n});
        for (int64_t i = 0; i < n; ++i)
          o.data<double>()[i] = keyed_uniform(static_cast<uint64_t>(s.data<int64_t>()[i]),
                                              static_cast<uint64_t>(t.data<int64_t>()[i]), p.data<int64_t>()[i],
                                              static_cast<uint32_t>(u.data<int64_t>()[i]));
      },
      py::arg("seeds"), py::arg("streams"), py::arg("positions"), py::arg("purposes"), py::arg("out"));

  m.def(
      "process_probs",
      [](py::handle logits, py::handle temperature, py::handle top_k, py::handle top_p, py::handle saguaro_c,
         py::handle saguaro_topn, py::handle out, uint64_t cuda_stream) {
        auto l = borrow_tensor(logits, "logits");
        l.require(DType::kFloat32, {-1, -1});
        const int64_t rows = l.shape[0], vocab = l.shape[1];
        check_dim(vocab, "logits.shape[1] (vocab)");
        auto o = borrow_tensor(out, "out");
        o.require(DType::kFloat32, {rows, vocab});
        require_device_group({&l, &o});
        const auto params = gather_params(temperature, top_k, top_p, saguaro_c, saguaro_topn, rows);
        py::gil_scoped_release release;
        if (l.is_cuda()) {
#ifdef SAGUARO_WITH_CUDA
          process_probs_cuda(l.data<float>(), params.data(), rows, vocab, o.data<float>(),
                             reinterpret_cast<void*>(cuda_stream));
#endif
        } else {
          (void)cuda_stream;
          process_probs_cpu(l.data<float>(), params.data(), rows, vocab, o.data<float>());
        }
      },
      py::arg("logits"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("saguaro_c"),
      py::arg("saguaro_topn"), py::arg("out"), py::arg("cuda_stream") = 0);

  m.def(
      "verify_chain",
      [](py::handle target_logits, py::handle draft_tokens, py::handle q, py::handle num_draft,
         py::handle deterministic, py::handle temperature, py::handle top_k, py::handle top_p, py::handle seeds,
         py::handle streams, py::handle positions, py::handle accepted, py::handle bonus, uint64_t cuda_stream) {
        auto l = borrow_tensor(target_logits, "target_logits");
        l.require(DType::kFloat32, {-1, -1, -1});
        const int64_t B = l.shape[0], K = l.shape[1] - 1, V = l.shape[2];
        check_dim(l.shape[1], "target_logits.shape[1] (K + 1)");
        check_dim(V, "target_logits.shape[2] (vocab)");
        auto x = borrow_tensor(draft_tokens, "draft_tokens");
        x.require(DType::kInt32, {B, K});
        auto a = borrow_tensor(accepted, "accepted");
        a.require(DType::kInt32, {B});
        auto t = borrow_tensor(bonus, "bonus");
        t.require(DType::kInt32, {B});
        std::vector<const TensorView*> group{&l, &x, &a, &t};
        TensorView qv;
        const bool has_q = !q.is_none();
        if (has_q) {
          qv = borrow_tensor(q, "q");
          qv.require(DType::kFloat32, {B, K, V});
          group.push_back(&qv);
        }
        require_device_group(group);
        auto nd = cpu_rows(num_draft, "num_draft", DType::kInt32, {B});
        auto det = cpu_rows(deterministic, "deterministic", DType::kUInt8, {B});
        auto pos = cpu_rows(positions, "positions", DType::kInt64, {B});
        auto tv = borrow_tensor(temperature, "temperature");
        auto kv = borrow_tensor(top_k, "top_k");
        auto pv = borrow_tensor(top_p, "top_p");
        tv.require(DType::kFloat32, {B});
        tv.require_cpu();
        pv.require(DType::kFloat32, {B});
        pv.require_cpu();
        kv.require(DType::kInt32, {B});
        kv.require_cpu();
        std::vector<ProcessParams> target(static_cast<size_t>(B));
        for (int64_t b = 0; b < B; ++b) {
          target[b].temperature = tv.data<float>()[b];
          target[b].top_k = kv.data<int32_t>()[b];
          target[b].top_p = pv.data<float>()[b];
        }
        const auto keys = gather_keys(seeds, streams, B);
        const float* qp = has_q ? qv.data<float>() : nullptr;
        py::gil_scoped_release release;
        if (l.is_cuda()) {
#ifdef SAGUARO_WITH_CUDA
          verify_chain_cuda(l.data<float>(), x.data<int32_t>(), qp, nd.data<int32_t>(), det.data<uint8_t>(),
                            target.data(), keys.data(), pos.data<int64_t>(), B, K, V, a.data<int32_t>(),
                            t.data<int32_t>(), reinterpret_cast<void*>(cuda_stream));
#endif
        } else {
          verify_chain_cpu(l.data<float>(), x.data<int32_t>(), qp, nd.data<int32_t>(), det.data<uint8_t>(),
                           target.data(), keys.data(), pos.data<int64_t>(), B, K, V, a.data<int32_t>(),
                           t.data<int32_t>());
        }
      },
      py::arg("target_logits"), py::arg("draft_tokens"), py::arg("q"), py::arg("num_draft"), py::arg("deterministic"),
      py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("seeds"), py::arg("streams"),
      py::arg("positions"), py::arg("accepted"), py::arg("bonus"), py::arg("cuda_stream") = 0);

  m.def(
      "fanout_candidates",
      [](py::handle draft_logits, py::handle drafted, py::handle fanout, py::handle out, uint64_t cuda_stream) {
        auto l = borrow_tensor(draft_logits, "draft_logits");
        l.require(DType::kFloat32, {-1, -1, -1});
        const int64_t B = l.shape[0], K = l.shape[1] - 1, V = l.shape[2];
        check_dim(l.shape[1], "draft_logits.shape[1] (K + 1)");
        check_dim(V, "draft_logits.shape[2] (vocab)");
        auto d = borrow_tensor(drafted, "drafted");
        d.require(DType::kInt32, {B, K});
        auto o = borrow_tensor(out, "out");
        o.require(DType::kInt32, {B, K + 1, -1});
        const int64_t Fmax = o.shape[2];
        require_device_group({&l, &d, &o});
        auto f = cpu_rows(fanout, "fanout", DType::kInt32, {B, K + 1});
        py::gil_scoped_release release;
        if (l.is_cuda()) {
#ifdef SAGUARO_WITH_CUDA
          fanout_candidates_cuda(l.data<float>(), d.data<int32_t>(), f.data<int32_t>(), B, K, V, Fmax,
                                 o.data<int32_t>(), reinterpret_cast<void*>(cuda_stream));
#endif
        } else {
          (void)cuda_stream;
          fanout_candidates_cpu(l.data<float>(), d.data<int32_t>(), f.data<int32_t>(), B, K, V, Fmax,
                                o.data<int32_t>());
        }
      },
      py::arg("draft_logits"), py::arg("drafted"), py::arg("fanout"), py::arg("out"), py::arg("cuda_stream") = 0);

  m.def(
      "sample_rows",
      [](py::handle logits, py::handle temperature, py::handle top_k, py::handle top_p, py::handle saguaro_c,
         py::handle saguaro_topn, py::handle seeds, py::handle streams, py::handle positions, py::handle probs_out,
         py::handle tokens_out, uint64_t cuda_stream) {
        auto l = borrow_tensor(logits, "logits");
        l.require(DType::kFloat32, {-1, -1});
        const int64_t N = l.shape[0], V = l.shape[1];
        check_dim(V, "logits.shape[1] (vocab)");
        auto po = borrow_tensor(probs_out, "probs_out");
        po.require(DType::kFloat32, {N, V});
        auto to = borrow_tensor(tokens_out, "tokens_out");
        to.require(DType::kInt32, {N});
        require_device_group({&l, &po, &to});
        const auto params = gather_params(temperature, top_k, top_p, saguaro_c, saguaro_topn, N);
        const auto keys = gather_keys(seeds, streams, N);
        auto pos = cpu_rows(positions, "positions", DType::kInt64, {N});
        py::gil_scoped_release release;
        if (l.is_cuda()) {
#ifdef SAGUARO_WITH_CUDA
          sample_rows_cuda(l.data<float>(), params.data(), keys.data(), pos.data<int64_t>(), N, V, po.data<float>(),
                           to.data<int32_t>(), reinterpret_cast<void*>(cuda_stream));
#endif
        } else {
          (void)cuda_stream;
          sample_rows_cpu(l.data<float>(), params.data(), keys.data(), pos.data<int64_t>(), N, V, po.data<float>(),
                          to.data<int32_t>());
        }
      },
      py::arg("logits"), py::arg("temperature"), py::arg("top_k"), py::arg("top_p"), py::arg("saguaro_c"),
      py::arg("saguaro_topn"), py::arg("seeds"), py::arg("streams"), py::arg("positions"), py::arg("probs_out"),
      py::arg("tokens_out"), py::arg("cuda_stream") = 0);

  m.attr("kernels_have_cuda") =
#ifdef SAGUARO_WITH_CUDA
      true;
#else
      false;
#endif
}

}  // namespace saguaro::bindings
