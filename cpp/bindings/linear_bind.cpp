// saguaro._core entry points of the batch-invariant bf16 small-M linear kernel (small_gemm.hpp).
// Every argument is validated here (dtype, shape, device, contiguity) so a direct call can raise
// ValueError but never crash. The GIL is released while the kernel runs: the SSD target and draft
// workers call it from two Python threads and must overlap.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "dlpack_tensor.hpp"
#include "saguaro/huge_pages.hpp"
#include "saguaro/memory_bandwidth.hpp"
#include "saguaro/small_gemm.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

namespace {

SmallGemmPath parse_path(const std::string& path) {
  if (path == "auto") return SmallGemmPath::kAuto;
  if (path == "scalar") return SmallGemmPath::kScalar;
  if (path == "avx2") return SmallGemmPath::kAvx2;
  throw py::value_error("path: expected 'auto', 'scalar' or 'avx2', got '" + path + "'");
}

// Validates bias / out / threads / path and runs the product on an unpacked [N, K] weight or a packed
// [ceil(N / 16), K, 16] one (`packed`).
void run_linear(const TensorView& xv, const TensorView& wv, bool packed, int64_t N, py::handle bias, py::handle out,
                int threads, const std::string& path) {
  const int64_t M = xv.shape[0], K = xv.shape[1];
  if (M < 1) xv.fail("needs at least one row");
  if (K < 1) xv.fail("needs at least one column (in_features)");
  if (N < 1) wv.fail("needs at least one row (out_features)");
  const uint16_t* bias_ptr = nullptr;
  TensorView bv;
  if (!bias.is_none()) {
    bv = borrow_tensor(bias, "bias");
    bv.require_bf16({N});
    bias_ptr = bv.data<uint16_t>();
  }
  auto ov = borrow_tensor(out, "out");
  ov.require_cpu();
  uint16_t* y_bf16 = nullptr;
  float* y_f32 = nullptr;
  if (ov.is_bf16()) {
    ov.require_bf16({M, N});
    y_bf16 = ov.data<uint16_t>();
  } else if (ov.dtype == DType::kFloat32) {
    ov.require(DType::kFloat32, {M, N});
    y_f32 = ov.data<float>();
  } else {
    ov.fail("expected dtype bfloat16 or float32");
  }
  if (threads < 1) throw py::value_error("threads: must be >= 1, got " + std::to_string(threads));
  const SmallGemmPath p = parse_path(path);
  if (p == SmallGemmPath::kAvx2 && !small_gemm_has_avx2())
    throw py::value_error("path: 'avx2' was asked for but this CPU lacks AVX2+FMA");
  py::gil_scoped_release release;
  if (packed)
    small_gemm_bf16_packed(xv.data<uint16_t>(), wv.data<uint16_t>(), bias_ptr, M, N, K, y_bf16, y_f32, threads, p);
  else
    small_gemm_bf16(xv.data<uint16_t>(), wv.data<uint16_t>(), bias_ptr, M, N, K, y_bf16, y_f32, threads, p);
}

int64_t panels(int64_t n) { return (n + 15) / 16; }

}  // namespace

void bind_quant(py::module_& m);  // quant_bind.cpp: the quantized linear's kernels, registered with this one

void bind_linear(py::module_& m) {
  bind_quant(m);
  m.def("small_gemm_has_avx2", &small_gemm_has_avx2, "True when this CPU can run the AVX2+FMA small-M linear path.");

  m.def(
      "small_gemm_bf16",
      [](py::handle x, py::handle weight, py::handle bias, py::handle out, int threads, const std::string& path) {
        auto xv = borrow_tensor(x, "x");
        xv.require_bf16({-1, -1});
        auto wv = borrow_tensor(weight, "weight");
        wv.require_bf16({-1, -1});
        const int64_t K = xv.shape[1];
        if (wv.shape[1] != K)
          wv.fail("expected shape [*, " + std::to_string(K) + "] (x has " + std::to_string(K) + " columns), got " +
                  wv.shape_str());
        run_linear(xv, wv, false, wv.shape[0], bias, out, threads, path);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("threads") = 1,
      py::arg("path") = "auto",
      "out[M, N] = x[M, K] @ weight[N, K]^T (+ bias[N]); x, weight, bias bf16 CPU tensors, out bf16 or float32. "
      "Packs the weight on every call (models pack once: small_gemm_pack_bf16). Batch-invariant: each output "
      "row's bits depend only on its own input row.");

  m.def(
      "small_gemm_pack_bf16",
      [](py::handle weight, py::handle packed, int threads) {
        auto wv = borrow_tensor(weight, "weight");
        wv.require_bf16({-1, -1});
        const int64_t N = wv.shape[0], K = wv.shape[1];
        if (N < 1 || K < 1) wv.fail("needs at least one row and one column, got " + wv.shape_str());
        auto pv = borrow_tensor(packed, "packed");
        pv.require_bf16({panels(N), K, 16});
        if (threads < 1) throw py::value_error("threads: must be >= 1, got " + std::to_string(threads));
        py::gil_scoped_release release;
        small_gemm_pack_bf16(wv.data<uint16_t>(), N, K, pv.data<uint16_t>(), threads);
      },
      py::arg("weight"), py::arg("packed"), py::arg("threads") = 1,
      "Packs weight [N, K] (bf16) into packed [ceil(N / 16), K, 16] (bf16), the kernel's panel layout.");

  m.def(
      "small_gemm_bf16_packed",
      [](py::handle x, py::handle packed, int64_t n, py::handle bias, py::handle out, int threads,
         const std::string& path) {
        auto xv = borrow_tensor(x, "x");
        xv.require_bf16({-1, -1});
        if (n < 1) throw py::value_error("n: out_features must be >= 1, got " + std::to_string(n));
        auto pv = borrow_tensor(packed, "packed");
        pv.require_bf16({panels(n), xv.shape[1], 16});
        run_linear(xv, pv, true, n, bias, out, threads, path);
      },
      py::arg("x"), py::arg("packed"), py::arg("n"), py::arg("bias"), py::arg("out"), py::arg("threads") = 1,
      py::arg("path") = "auto",
      "out[M, n] = x[M, K] @ W[n, K]^T (+ bias[n]) with W given packed ([ceil(n / 16), K, 16] from "
      "small_gemm_pack_bf16).");

  m.def(
      "small_gemm_fma_peak",
      [](double seconds) {  // the core validates (std::invalid_argument arrives as ValueError)
        py::gil_scoped_release release;
        return small_gemm_fma_peak(seconds);
      },
      py::arg("seconds") = 0.2,
      "This core's fp32 multiply-add rate (per second; 8 per 256-bit FMA) with 12 independent chains: "
      "the ceiling of the AVX2 path. 0.0 without AVX2+FMA.");

  m.def(
      "memory_read_bandwidth",
      [](int64_t bytes, int threads, int reps) {  // the core validates (ValueError)
        py::gil_scoped_release release;
        return memory_read_bandwidth(bytes, threads, reps);
      },
      py::arg("bytes"), py::arg("threads") = 1, py::arg("reps") = 3,
      "Bytes per second that `threads` new threads (with the caller's CPU affinity) read from a buffer of "
      "`bytes` bytes, the best of `reps` passes: the memory roofline of a decode.");

  m.def(
      "advise_huge_pages",
      [](py::handle buffer) {
        auto v = borrow_tensor(buffer, "buffer");
        v.require(DType::kUInt8, {-1});
        v.require_cpu();
        return static_cast<int64_t>(advise_huge_pages(v.data<uint8_t>(), static_cast<size_t>(v.numel())));
      },
      py::arg("buffer"),
      "Asks for transparent huge pages behind the whole 2 MiB pages of a 1-D uint8 CPU tensor not yet "
      "written; returns the bytes advised (0: none fit, or the kernel was built without them).");

  m.def(
      "small_gemm_time_packed",
      [](int64_t M, int64_t N, int64_t K, int reps, int threads) {  // the core validates, as above
        py::gil_scoped_release release;
        return small_gemm_time_packed(M, N, K, reps, threads);
      },
      py::arg("m"), py::arg("n"), py::arg("k"), py::arg("reps") = 20, py::arg("threads") = 1,
      "Median seconds of one packed-kernel call of m rows on an [n, k] weight, over reps back-to-back "
      "calls in C++ (no Python between them): in-cache weights give the compute rate, large ones the "
      "streaming rate.");
}

}  // namespace saguaro::bindings
