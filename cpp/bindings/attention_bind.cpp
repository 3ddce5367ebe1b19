// saguaro._core entry point of the batch-invariant causal attention (decode_attention.hpp). Every
// argument is validated here so a direct call raises ValueError, never crashes; the GIL is released
// while it runs (the SSD target and draft threads overlap).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "dlpack_tensor.hpp"
#include "saguaro/decode_attention.hpp"
#include "saguaro/rope_store.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

// q [n, H, D], keys / values [Hkv, capacity, D], out [n, H, D]: all bf16 CPU, checked together.
struct AttentionViews {
  TensorView q, keys, values, out;
  int64_t n, H, Hkv, D, capacity;

  int64_t q_row_stride;  // elements between query rows: H * D, or more for the q heads of a q/k/v row

  AttentionViews(py::handle q_, py::handle keys_, py::handle values_, py::handle out_)
      : q(borrow_tensor(q_, "q")), keys(borrow_tensor(keys_, "keys")), values(borrow_tensor(values_, "values")),
        out(borrow_tensor(out_, "out")) {
    if (!q.is_bf16() || q.ndim() != 3) q.fail("expected a 3-d bfloat16 tensor");
    q.require_cpu();
    n = q.shape[0], H = q.shape[1], D = q.shape[2];
    q_row_stride = n > 1 ? q.strides[0] : H * D;
    if ((D > 1 && q.strides[2] != 1) || (H > 1 && q.strides[1] != D) || q_row_stride < H * D)
      q.fail("each row's heads must be contiguous (call .contiguous())");
    keys.require_bf16({-1, -1, D});
    Hkv = keys.shape[0], capacity = keys.shape[1];
    values.require_bf16({Hkv, capacity, D});
    out.require_bf16({n, H, D});
    if (n < 1) q.fail("needs at least one query row");
    if (Hkv < 1 || H % Hkv != 0)
      keys.fail("KV heads (" + std::to_string(Hkv) + ") must divide the query heads (" + std::to_string(H) + ")");
  }
};

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "causal_attention_bf16",
      [](py::handle q, py::handle keys, py::handle values, int64_t start, float scale, py::handle out, int threads,
         const std::string& path) {
        const AttentionViews a(q, keys, values, out);
        const int64_t n = a.n, H = a.H, Hkv = a.Hkv, D = a.D, capacity = a.capacity;
        if (start < 0 || start + n > capacity)
          throw py::value_error("start: start + rows must be <= the KV capacity " + std::to_string(capacity) +
                                ", got start=" + std::to_string(start) + " rows=" + std::to_string(n));
        if (threads < 1) throw py::value_error("threads: must be >= 1, got " + std::to_string(threads));
        SmallGemmPath p = SmallGemmPath::kAuto;
        if (path == "scalar") p = SmallGemmPath::kScalar;
        else if (path == "avx2") p = SmallGemmPath::kAvx2;
        else if (path != "auto") throw py::value_error("path: expected 'auto', 'scalar' or 'avx2', got '" + path + "'");
        if (p == SmallGemmPath::kAvx2 && !small_gemm_has_avx2())
          throw py::value_error("path: 'avx2' was asked for but this CPU lacks AVX2+FMA");
        py::gil_scoped_release release;
        causal_attention_bf16(a.q.data<uint16_t>(), a.q_row_stride, a.keys.data<uint16_t>(), a.values.data<uint16_t>(), capacity, n, H, Hkv,
                              D, start, scale, a.out.data<uint16_t>(), threads, p);
      },
      py::arg("q"), py::arg("keys"), py::arg("values"), py::arg("start"), py::arg("scale"), py::arg("out"),
      py::arg("threads") = 1, py::arg("path") = "auto",
      "out[i, h] = softmax(q[i, h] . keys[h / g, :start + i + 1]^T * scale) @ values[h / g, :start + i + 1] for bf16 "
      "CPU tensors q [n, H, D], keys / values [Hkv, capacity, D], out [n, H, D]; each row's bits are those of the "
      "row alone.");

  m.def(
      "branch_attention_bf16",
      [](py::handle q, py::handle keys, py::handle values, py::handle prefix, py::handle own_first, int64_t own_stride,
         int64_t own_count, float scale, py::handle out, int threads) {
        const AttentionViews a(q, keys, values, out);
        const int64_t n = a.n, H = a.H, Hkv = a.Hkv, D = a.D, capacity = a.capacity;
        auto pv = borrow_tensor(prefix, "prefix");
        pv.require_cpu();
        pv.require(DType::kInt64, {n});
        auto fv = borrow_tensor(own_first, "own_first");
        fv.require_cpu();
        fv.require(DType::kInt64, {n});
        if (threads < 1) throw py::value_error("threads: must be >= 1, got " + std::to_string(threads));
        py::gil_scoped_release release;  // std::invalid_argument (a bad slot) reaches Python as ValueError
        branch_attention_bf16(a.q.data<uint16_t>(), a.q_row_stride, a.keys.data<uint16_t>(), a.values.data<uint16_t>(), capacity, n, H,
                              Hkv, D, pv.data<int64_t>(), fv.data<int64_t>(), own_stride, own_count, scale,
                              a.out.data<uint16_t>(), threads);
      },
      py::arg("q"), py::arg("keys"), py::arg("values"), py::arg("prefix"), py::arg("own_first"),
      py::arg("own_stride"), py::arg("own_count"), py::arg("scale"), py::arg("out"), py::arg("threads") = 1,
      "Tree-step attention: row i of q [n, H, D] sees KV slots [0, prefix[i]) and own_first[i] + j * own_stride "
      "(j < own_count); bf16 CPU tensors, prefix / own_first int64 [n].");

  m.def(
      "rope_store_bf16",
      [](py::handle qkv, py::handle cos, py::handle sin, int64_t q_heads, py::handle keys, py::handle values,
         int64_t start) {
        auto qv = borrow_tensor(qkv, "qkv");
        qv.require_bf16({-1, -1, -1});
        const int64_t n = qv.shape[0], heads = qv.shape[1], D = qv.shape[2];
        if (n < 1) qv.fail("needs at least one row");
        auto kv = borrow_tensor(keys, "keys");
        kv.require_bf16({-1, -1, D});
        const int64_t Hkv = kv.shape[0], capacity = kv.shape[1];
        if (q_heads < 1 || heads != q_heads + 2 * Hkv)
          qv.fail("expected q_heads + 2 * KV heads = " + std::to_string(q_heads + 2 * Hkv) + " heads, got " +
                  std::to_string(heads));
        auto vv = borrow_tensor(values, "values");
        vv.require_bf16({Hkv, capacity, D});
        auto cv = borrow_tensor(cos, "cos");
        cv.require_bf16({n, D});
        auto sv = borrow_tensor(sin, "sin");
        sv.require_bf16({n, D});
        if (start < 0 || start + n > capacity)
          throw py::value_error("start: start + rows must be <= the KV capacity " + std::to_string(capacity) +
                                ", got start=" + std::to_string(start) + " rows=" + std::to_string(n));
        py::gil_scoped_release release;  // std::invalid_argument reaches Python as ValueError
        rope_store_bf16(qv.data<uint16_t>(), n, q_heads, Hkv, D, cv.data<uint16_t>(), sv.data<uint16_t>(),
                        kv.data<uint16_t>(), vv.data<uint16_t>(), capacity, start);
      },
      py::arg("qkv"), py::arg("cos"), py::arg("sin"), py::arg("q_heads"), py::arg("keys"), py::arg("values"),
      py::arg("start"),
      "Rotate the q and k heads of qkv [n, q_heads + 2 * Hkv, D] in place (rotate-half RoPE with cos / sin [n, D], "
      "the bf16 roundings of x * cos + rotate_half(x) * sin) and copy row i's k and v heads to slot start + i of "
      "keys / values [Hkv, capacity, D]; bf16 CPU, C-contiguous.");
}

}  // namespace saguaro::bindings
