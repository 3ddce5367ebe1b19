#pragma once
// The layers of a bf16 CPU decoder with quantized projections, run in one call over the new rows of one or
// more sequences: decodes, verification chains, tree steps and prompts of at most 32 rows (longer prefills
// run masked SDPA from Python). Per layer it runs the steps saguaro.models.decoder runs from Python, with the same kernels in the
// same order, so the bits are the Python path's:
//   h = norm(x)                                   (the first layer; later ones get h from the add below)
//   qkv = Wqkv h (all rows); per sequence: rope_store, causal or branch attention
//   x, h = x + Wo a, mlp_norm(x + Wo a)           (add_rms_norm_bf16)
//   x, h = x + Wdown silu_mul(Wgate_up h), next norm of it
// Between the ~10 kernel calls of a layer, the Python path makes ~30 Python and torch calls (~5 ms of a
// ~60 ms quantized decode of the 1.5B on two cores); here there are none.
#include <cstdint>
#include <vector>

#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_projection.hpp"

namespace saguaro {

struct DecoderChainLayer {
  const uint16_t* attn_norm;  // [hidden] bf16
  const uint16_t* mlp_norm;   // [hidden] bf16
  const QuantProjectionRef* qkv;      // [(H + 2 Hkv) D, hidden], bias included
  const QuantProjectionRef* out;      // [hidden, H D]
  const QuantProjectionRef* gate_up;  // [2 I, hidden]: gate rows, then up rows
  const QuantProjectionRef* down;     // [hidden, I]
};

// One sequence's rows [row_start, row_start + rows) of x, stored at slots start + i of its KV buffer
// kv [layers, 2, kv_heads, capacity, head_dim]. prefix null: a causal chain, row i attends slots
// [0, start + i]; otherwise a tree step: row i attends [0, prefix[i]) and own_first[i] + j * own_stride for
// j < own_count (decode_attention.hpp's branch_attention_bf16).
struct DecoderChainGroup {
  int64_t row_start, rows;
  uint16_t* kv;
  int64_t capacity, start;
  const int64_t* prefix = nullptr;
  const int64_t* own_first = nullptr;
  int64_t own_stride = 0, own_count = 0;
};

struct DecoderChainShape {
  int64_t hidden, heads, kv_heads, head_dim, intermediate;
  float eps;  // every RMSNorm's
};

// x [n, hidden] bf16: the embedded rows in, the residual stream after the last layer out (in place).
// cos / sin [n, head_dim] bf16: each row's rotary row. groups: the sequences, covering rows [0, n) in order.
// final_norm: null, or the model's final norm weight [hidden]; then the last residual add and this norm run
// together and `normed` [n, hidden] receives the normed rows. Throws std::invalid_argument for bad sizes.
void decoder_chain_bf16(const std::vector<DecoderChainLayer>& layers, const DecoderChainShape& shape, uint16_t* x,
                        int64_t n, const uint16_t* cos, const uint16_t* sin,
                        const std::vector<DecoderChainGroup>& groups, const uint16_t* final_norm, uint16_t* normed,
                        int threads, CpuIsa isa);

}  // namespace saguaro
