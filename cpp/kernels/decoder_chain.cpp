// A quantized bf16 decoder's layers over its sequences' new rows in one call (include/saguaro/decoder_chain.hpp).
#include "saguaro/decoder_chain.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "saguaro/decode_attention.hpp"
#include "saguaro/rms_norm.hpp"
#include "saguaro/rope_store.hpp"
#include "saguaro/silu_mul.hpp"
#include "saguaro/small_gemm.hpp"

namespace saguaro {

void decoder_chain_bf16(const std::vector<DecoderChainLayer>& layers, const DecoderChainShape& s, uint16_t* x,
                        int64_t n, const uint16_t* cos, const uint16_t* sin,
                        const std::vector<DecoderChainGroup>& groups, const uint16_t* final_norm, uint16_t* normed,
                        int threads, CpuIsa isa) {
  const int64_t H = s.heads, Hkv = s.kv_heads, D = s.head_dim, hidden = s.hidden, I = s.intermediate;
  if (layers.empty()) throw std::invalid_argument("decoder_chain_bf16: needs at least one layer");
  if (n < 1) throw std::invalid_argument("decoder_chain_bf16: needs at least one row");
  int64_t covered = 0;
  for (const auto& g : groups) {
    if (g.row_start != covered || g.rows < 1 || g.kv == nullptr)
      throw std::invalid_argument("decoder_chain_bf16: the groups must cover the rows in order, each non-empty");
    if (g.start < 0 || g.start + g.rows > g.capacity)
      throw std::invalid_argument("decoder_chain_bf16: start + rows must be <= the KV capacity " +
                                  std::to_string(g.capacity) + ", got start=" + std::to_string(g.start) +
                                  " rows=" + std::to_string(g.rows));
    covered += g.rows;
  }
  if (covered != n) throw std::invalid_argument("decoder_chain_bf16: the groups cover " + std::to_string(covered) +
                                                " rows of " + std::to_string(n));
  if (final_norm != nullptr && normed == nullptr) throw std::invalid_argument("decoder_chain_bf16: normed is null");
  for (const auto& l : layers) {
    if (l.qkv->in_features() != hidden || l.qkv->out_features() != (H + 2 * Hkv) * D ||
        l.out->in_features() != H * D || l.out->out_features() != hidden || l.gate_up->in_features() != hidden ||
        l.gate_up->out_features() != 2 * I || l.down->in_features() != I || l.down->out_features() != hidden)
      throw std::invalid_argument("decoder_chain_bf16: a layer's projections do not fit the model's shape");
  }
  // per calling thread (the SSD target and draft each have one): no allocation once grown
  thread_local std::vector<uint16_t> h, qkv, att, y, gu, act;
  h.resize(static_cast<size_t>(n * hidden));
  qkv.resize(static_cast<size_t>(n * (H + 2 * Hkv) * D));
  att.resize(static_cast<size_t>(n * H * D));
  y.resize(static_cast<size_t>(n * hidden));
  gu.resize(static_cast<size_t>(n * 2 * I));
  act.resize(static_cast<size_t>(n * I));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));  // as Python's 1 / math.sqrt
  const int64_t row = (H + 2 * Hkv) * D;
  rms_norm_bf16(x, layers[0].attn_norm, n, hidden, s.eps, h.data());
  for (size_t i = 0; i < layers.size(); ++i) {
    const DecoderChainLayer& l = layers[i];
    l.qkv->forward_bf16(h.data(), n, qkv.data(), threads, isa);
    // every sequence's rows stored before any attends (the Python path's order)
    for (const auto& g : groups) {
      uint16_t* keys = g.kv + static_cast<int64_t>(i) * 2 * Hkv * g.capacity * D;
      rope_store_bf16(qkv.data() + g.row_start * row, g.rows, H, Hkv, D, cos + g.row_start * D,
                      sin + g.row_start * D, keys, keys + Hkv * g.capacity * D, g.capacity, g.start);
    }
    for (const auto& g : groups) {
      const uint16_t* keys = g.kv + static_cast<int64_t>(i) * 2 * Hkv * g.capacity * D;
      const uint16_t* values = keys + Hkv * g.capacity * D;
      const uint16_t* q = qkv.data() + g.row_start * row;
      uint16_t* a = att.data() + g.row_start * H * D;
      if (g.prefix == nullptr)
        causal_attention_bf16(q, row, keys, values, g.capacity, g.rows, H, Hkv, D, g.start, scale, a, threads);
      else
        branch_attention_bf16(q, row, keys, values, g.capacity, g.rows, H, Hkv, D, g.prefix, g.own_first,
                              g.own_stride, g.own_count, scale, a, threads);
    }
    l.out->forward_bf16(att.data(), n, y.data(), threads, isa);
    add_rms_norm_bf16(x, y.data(), l.mlp_norm, n, hidden, s.eps, x, h.data());
    l.gate_up->forward_bf16(h.data(), n, gu.data(), threads, isa);
    silu_mul_bf16(gu.data(), n, I, act.data(), isa);
    l.down->forward_bf16(act.data(), n, y.data(), threads, isa);
    const bool last = i + 1 == layers.size();
    if (!last) {
      add_rms_norm_bf16(x, y.data(), layers[i + 1].attn_norm, n, hidden, s.eps, x, h.data());
    } else if (final_norm != nullptr) {
      add_rms_norm_bf16(x, y.data(), final_norm, n, hidden, s.eps, x, normed);
    } else {
      for (int64_t j = 0; j < n * hidden; ++j) x[j] = float_to_bf16(bf16_to_float(x[j]) + bf16_to_float(y[j]));
    }
  }
}

}  // namespace saguaro
