// saguaro._core entry points of the quantized GEMM on GGUF blocks (quant_gemm.hpp) and the CPU path
// choice (cpu_features.hpp). Arguments are validated here (dtype, shape, device, contiguity) so a direct
// call raises ValueError but never crashes; the GIL is released while the kernel runs (the SSD target and
// draft workers call it from two Python threads).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "quant_args.hpp"
#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_gemm.hpp"
#include "saguaro/quant_b16.hpp"
#include "saguaro/quant_q4k16.hpp"
#include "saguaro/quant_q6k16.hpp"

namespace py = pybind11;

namespace saguaro::bindings {

void bind_kquant16(py::module_& m);
void bind_b16(py::module_& m);
void bind_quant_projection(py::module_& m);  // quant_projection_bind.cpp

void bind_quant(py::module_& m) {
  bind_kquant16(m);
  bind_b16(m);
  bind_quant_projection(m);
  m.def("cpu_isa_supported", [] { return std::string(cpu_isa_name(cpu_isa_supported())); },
        "The best SIMD path of this CPU for the quantized kernels: 'avx512', 'avx2' or 'scalar'.");
  m.def("cpu_isa_selected", [] { return std::string(cpu_isa_name(cpu_isa_selected())); },
        "The path a call runs now: the CPU's best, lowered by $SAGUARO_CPU_ISA when set.");
  m.def("cpu_amx_supported", &cpu_amx_supported,
        "True when this process may run AMX-INT8 tiles (CPU, OS state and permission); the Q5_0 / Q8_0 "
        "interleaved kernel uses them for 12 rows and more.");
  m.def("cpu_amx_selected", &cpu_amx_selected,
        "cpu_amx_supported() on the AVX-512 path, unless $SAGUARO_CPU_AMX=0.");
  m.def("quant_row_bytes", [](int ggml_type, int64_t k) { return quant_row_bytes(parse_type(ggml_type), k); },
        py::arg("ggml_type"), py::arg("k"), "Bytes of one weight row of k values in this GGUF block format.");

  m.def(
      "quant_gemm",
      [](py::handle x, py::handle blocks, int ggml_type, int64_t n, py::handle out, int threads,
         const std::string& path) {
        const QuantType t = parse_type(ggml_type);
        auto xv = borrow_rows(x);
        const int64_t M = xv.shape[0], K = xv.shape[1];
        if (n < 1) throw py::value_error("n: out_features must be >= 1, got " + std::to_string(n));
        auto wv = borrow_blocks(blocks, t, n, K);
        auto ov = borrow_tensor(out, "out");
        const int64_t ldy = check_out(ov, M, n);
        check_threads(threads);
        const CpuIsa isa = path_isa(path);
        py::gil_scoped_release release;
        quant_gemm(t, wv.data<uint8_t>(), n, K, xv.data<float>(), M, ov.data<float>(), ldy, threads, isa);
      },
      py::arg("x"), py::arg("blocks"), py::arg("ggml_type"), py::arg("n"), py::arg("out"), py::arg("threads") = 1,
      py::arg("path") = "auto",
      "out[M, n] = x[M, K] @ W[n, K]^T with W given as GGUF blocks (uint8, n rows of K values), x and out "
      "float32 (out may be a column slice: rows at any stride). path 'auto' (the CPU's best, lowered by "
      "$SAGUARO_CPU_ISA), 'avx512', 'avx2' or 'scalar': "
      "all give the same bits, and each row's bits depend only on its own input row.");

  m.def(
      "quant_dequantize",
      [](py::handle blocks, int ggml_type, int64_t rows, int64_t k, py::handle out) {
        const QuantType t = parse_type(ggml_type);
        if (rows < 0) throw py::value_error("rows: must be >= 0, got " + std::to_string(rows));
        auto wv = borrow_blocks(blocks, t, rows, k);
        auto ov = borrow_tensor(out, "out");
        ov.require_cpu();
        ov.require(DType::kFloat32, {rows, k});
        py::gil_scoped_release release;
        quant_dequantize_rows(t, wv.data<uint8_t>(), rows, k, ov.data<float>());
      },
      py::arg("blocks"), py::arg("ggml_type"), py::arg("rows"), py::arg("k"), py::arg("out"),
      "out[rows, k] = the fp32 weights of `rows` rows of GGUF blocks (as llama.cpp dequantizes them).");
}

void bind_b16(py::module_& m) {
  m.def("quant_b16_packed_bytes",
        [](int ggml_type, int64_t n, int64_t k) { return quant_b16_packed_bytes(parse_type(ggml_type), n, k); },
        py::arg("ggml_type"), py::arg("n"), py::arg("k"),
        "Bytes of the 16-column interleaved form of an [n, k] Q5_0 / Q8_0 matrix (n % 16 == 0).");
  m.def(
      "quant_b16_repack",
      [](py::handle blocks, int ggml_type, int64_t n, int64_t k, py::handle out, int threads) {
        const QuantType t = parse_type(ggml_type);
        auto wv = borrow_blocks(blocks, t, n, k);
        auto ov = borrow_bytes(out, "out", quant_b16_packed_bytes(t, n, k));
        py::gil_scoped_release release;
        quant_b16_repack(t, wv.data<uint8_t>(), n, k, ov.data<uint8_t>(), threads);
      },
      py::arg("blocks"), py::arg("ggml_type"), py::arg("n"), py::arg("k"), py::arg("out"), py::arg("threads") = 1,
      "Repacks n rows of GGUF Q5_0 / Q8_0 blocks into the 16-column interleaved layout (quant_b16.hpp).");
  m.def(
      "quant_b16_gemm",
      [](py::handle x, py::handle packed, int ggml_type, int64_t n, py::handle out, int threads,
         const std::string& path) {
        const QuantType t = parse_type(ggml_type);
        auto xv = borrow_rows(x);
        const int64_t M = xv.shape[0], K = xv.shape[1];
        auto pv = borrow_bytes(packed, "packed", quant_b16_packed_bytes(t, n, K));
        auto ov = borrow_tensor(out, "out");
        const int64_t ldy = check_out(ov, M, n);
        check_threads(threads);
        const CpuIsa isa = path_isa(path);
        py::gil_scoped_release release;
        quant_b16_gemm(t, pv.data<uint8_t>(), n, K, xv.data<float>(), M, ov.data<float>(), ldy, threads, isa);
      },
      py::arg("x"), py::arg("packed"), py::arg("ggml_type"), py::arg("n"), py::arg("out"), py::arg("threads") = 1,
      py::arg("path") = "auto",
      "out[M, n] = x[M, K] @ W[n, K]^T with W repacked by quant_b16_repack: the GGUF blocks' bits.");
}

// The K-quant x16 layouts (quant_q4k16.hpp, quant_q6k16.hpp) share one signature: <name>_packed_bytes,
// <name>_repack and <name>_gemm.
using PackedBytesFn = int64_t (*)(int64_t, int64_t);
using RepackFn = void (*)(const uint8_t*, int64_t, int64_t, uint8_t*, int);
using GemmFn = void (*)(const uint8_t*, int64_t, int64_t, const float*, int64_t, float*, int64_t, int, CpuIsa);

void bind_k16(py::module_& m, const std::string& name, QuantType t, PackedBytesFn packed_bytes, RepackFn repack,
              GemmFn gemm) {
  const std::string type = quant_type_name(t), header = "quant_" + name + ".hpp";
  m.def((name + "_packed_bytes").c_str(), packed_bytes, py::arg("n"), py::arg("k"),
        ("Bytes of the 16-column interleaved form of an [n, k] " + type + " matrix (n % 16 == 0, k % 256 == 0).")
            .c_str());
  m.def(
      (name + "_repack").c_str(),
      [t, packed_bytes, repack](py::handle blocks, int64_t n, int64_t k, py::handle out, int threads) {
        auto wv = borrow_blocks(blocks, t, n, k);
        auto ov = borrow_bytes(out, "out", packed_bytes(n, k));
        check_threads(threads);
        py::gil_scoped_release release;
        repack(wv.data<uint8_t>(), n, k, ov.data<uint8_t>(), threads);
      },
      py::arg("blocks"), py::arg("n"), py::arg("k"), py::arg("out"), py::arg("threads") = 1,
      ("Repacks n rows of GGUF " + type + " blocks into the 16-column interleaved layout (" + header + ").").c_str());
  m.def(
      (name + "_gemm").c_str(),
      [packed_bytes, gemm](py::handle x, py::handle packed, int64_t n, py::handle out, int threads,
                           const std::string& path) {
        auto xv = borrow_rows(x);
        const int64_t M = xv.shape[0], K = xv.shape[1];
        auto pv = borrow_bytes(packed, "packed", packed_bytes(n, K));
        auto ov = borrow_tensor(out, "out");
        const int64_t ldy = check_out(ov, M, n);
        check_threads(threads);
        const CpuIsa isa = path_isa(path);
        py::gil_scoped_release release;
        gemm(pv.data<uint8_t>(), n, K, xv.data<float>(), M, ov.data<float>(), ldy, threads, isa);
      },
      py::arg("x"), py::arg("packed"), py::arg("n"), py::arg("out"), py::arg("threads") = 1, py::arg("path") = "auto",
      ("out[M, n] = x[M, K] @ W[n, K]^T with W repacked by " + name +
       "_repack: the bits quant_gemm gives on the GGUF blocks.").c_str());
}

void bind_kquant16(py::module_& m) {
  bind_k16(m, "q4k16", QuantType::kQ4_K, &q4k16_packed_bytes, &q4k16_repack, &q4k16_gemm);
  bind_k16(m, "q6k16", QuantType::kQ6_K, &q6k16_packed_bytes, &q6k16_repack, &q6k16_gemm);
}

}  // namespace saguaro::bindings
