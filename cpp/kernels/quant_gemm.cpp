// The quantized GEMM's entry points (include/saguaro/quant_gemm.hpp): argument checks, the activation
// quantization, the column split over threads, the path dispatch, the scalar path and dequantization.
#include "saguaro/quant_gemm.hpp"

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "column_pool.hpp"
#include "quant_formats.hpp"

namespace saguaro {

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("quant_gemm: " + what); }

void check_type(QuantType t) {
  if (!quant_type_supported(static_cast<int>(t)))
    bad("unsupported GGML type id " + std::to_string(static_cast<int>(t)) + " (supported: Q4_K, Q6_K, Q5_0, Q8_0)");
}

}  // namespace

bool quant_type_supported(int ggml_type) {
  switch (static_cast<QuantType>(ggml_type)) {
    case QuantType::kQ5_0:
    case QuantType::kQ8_0:
    case QuantType::kQ4_K:
    case QuantType::kQ6_K: return true;
  }
  return false;
}

const char* quant_type_name(QuantType t) {
  switch (t) {
    case QuantType::kQ5_0: return "Q5_0";
    case QuantType::kQ8_0: return "Q8_0";
    case QuantType::kQ4_K: return "Q4_K";
    case QuantType::kQ6_K: return "Q6_K";
  }
  return "unknown";
}

int64_t quant_block_values(QuantType t) {
  check_type(t);
  return quant::is_kquant(t) ? quant::kSuper : quant::kSmall;
}

int64_t quant_block_bytes(QuantType t) {
  switch (t) {
    case QuantType::kQ5_0: return sizeof(quant::BlockQ5_0);
    case QuantType::kQ8_0: return sizeof(quant::BlockQ8_0);
    case QuantType::kQ4_K: return sizeof(quant::BlockQ4_K);
    case QuantType::kQ6_K: return sizeof(quant::BlockQ6_K);
  }
  check_type(t);
  return 0;
}

int64_t quant_row_bytes(QuantType t, int64_t K) {
  const int64_t v = quant_block_values(t);
  if (K < 1 || K % v != 0)
    bad(std::string("K (in_features) must be a positive multiple of ") + std::to_string(v) + " for " +
        quant_type_name(t) + ", got " + std::to_string(K));
  return K / v * quant_block_bytes(t);
}

void quant_dequantize_rows(QuantType t, const uint8_t* w, int64_t rows, int64_t K, float* out) {
  const int64_t row_bytes = quant_row_bytes(t, K), bb = quant_block_bytes(t), bv = quant_block_values(t);
  if (rows < 0) bad("rows must be >= 0, got " + std::to_string(rows));
  if (rows > 0 && (w == nullptr || out == nullptr)) bad("dequantize: w and out must not be null");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < K / bv; ++b) {
      const uint8_t* blk = w + r * row_bytes + b * bb;
      float* o = out + r * K + b * bv;
      if (quant::is_kquant(t)) {
        quant::UnpackedA u;
        quant::unpack_scales_a(t, blk, u);
        quant::unpack_q_a_scalar(t, blk, u.q);
        for (int e = 0; e < quant::kSuper; ++e) {
          const int j = e / 16;
          if (t == QuantType::kQ4_K) o[e] = (u.d * u.sc[j]) * u.q[e] - u.dmin * u.mn[j];
          else o[e] = (u.d * u.sc[j]) * (u.q[e] - 32);
        }
      } else {
        uint8_t q[quant::kSmall];
        float d;
        quant::unpack_block_b_scalar(t, blk, q, d);
        const int off = quant::offset_b(t);
        for (int e = 0; e < quant::kSmall; ++e) o[e] = (q[e] - off) * d;
      }
    }
}

namespace quant {

// The reference arithmetic, one output at a time over rows, in the header's order.
void columns_scalar(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                    int64_t n1, float* y, int64_t ldy) {
  const int64_t M = a.M, K = a.K, bb = quant_block_bytes(t);
  if (is_kquant(t)) {
    UnpackedA u;
    std::vector<float> acc(static_cast<size_t>(M));
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t b = 0; b < K / kSuper; ++b) {
        const uint8_t* blk = w + n * row_bytes + b * bb;
        unpack_scales_a(t, blk, u);
        unpack_q_a_scalar(t, blk, u.q);
        for (int64_t m = 0; m < M; ++m) acc[m] = kind_a_block_reference(u, a, m, b, acc[m]);
      }
      for (int64_t m = 0; m < M; ++m) y[m * ldy + n] = acc[m];
    }
    return;
  }
  const int off = offset_b(t);
  std::vector<float> lanes(static_cast<size_t>(M * kGroup));
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(lanes.begin(), lanes.end(), 0.f);
    for (int64_t b = 0; b < K / kSmall; ++b) {
      uint8_t q[kSmall];
      float d;
      unpack_block_b_scalar(t, w + n * row_bytes + b * bb, q, d);
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* aq = a.row_q(m) + b * kSmall;
        int32_t isum = 0;
        for (int e = 0; e < kSmall; ++e) isum += q[e] * aq[e];
        isum -= off * a.bsum32[m * (K / kSmall) + b];
        float& lane = lanes[m * kGroup + b % kGroup];
        lane = kind_b_lane_step(lane, d, a.row_d(m)[b], isum);
      }
    }
    for (int64_t m = 0; m < M; ++m) y[m * ldy + n] = kind_b_reduce(lanes.data() + m * kGroup);
  }
}

}  // namespace quant

void quant_gemm(QuantType t, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads, CpuIsa isa) {
  const int64_t row_bytes = quant_row_bytes(t, K);
  quant::check_gemm_call("quant_gemm", M, N, ldy, w, x, y, threads, isa);
  thread_local quant::QuantActivations acts;  // reused: no allocation per call
  quant::quantize_activations(x, M, K, quant::is_kquant(t) ? quant::kSuper : quant::kSmall, acts, isa);
  // A plain reference: the workers must read this thread's activations, not their own thread_local ones.
  const quant::QuantActivations& a = acts;
  auto columns = isa == CpuIsa::kAvx512 ? &quant::columns_avx512
                 : isa == CpuIsa::kAvx2 ? &quant::columns_avx2
                                        : &quant::columns_scalar;
  // Columns split in parts of >= 64 (a part's hand-off costs more than it saves below that); any split
  // gives the same bits because every output is computed whole by one thread.
  constexpr int64_t kMinColumns = 64;
  detail::split_columns(N, threads, kMinColumns,
                        [&](int64_t n0, int64_t n1) { columns(t, w, row_bytes, a, n0, n1, y, ldy); });
}

void quant_gemm(QuantType t, const uint8_t* w, int64_t N, int64_t K, const float* x, int64_t M, float* y, int64_t ldy,
                int threads) {
  quant_gemm(t, w, N, K, x, M, y, ldy, threads, cpu_isa_selected());
}

}  // namespace saguaro
