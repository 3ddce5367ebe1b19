// The decoder chain (decoder_chain.hpp) against its steps called one by one: two layers of Q8_0
// projections over two sequences (a causal chain and a tree step's branches) in one call give the same
// bits and KV slots; bad groups throw. Run under the sanitizer builds too. pytest holds the chain against
// the Python layers (tests/models/test_decoder_chain.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "saguaro/decode_attention.hpp"
#include "saguaro/decoder_chain.hpp"
#include "saguaro/rms_norm.hpp"
#include "saguaro/rope_store.hpp"
#include "saguaro/silu_mul.hpp"
#include "saguaro/small_gemm.hpp"

namespace {

using namespace saguaro;

constexpr int64_t kHidden = 64, kH = 4, kHkv = 2, kD = 16, kI = 96, kLayers = 2, kCap = 12;

std::vector<uint8_t> q8_blocks(int64_t rows, int64_t k, std::mt19937& rng) {
  std::vector<uint8_t> w(static_cast<size_t>(rows * quant_row_bytes(QuantType::kQ8_0, k)));
  std::uniform_int_distribution<int> byte(-127, 127);
  for (size_t b = 0; b < w.size(); b += 34) {
    w[b] = 0x1f;  // fp16 0x211f ~ 0.01: the block's scale
    w[b + 1] = 0x21;
    for (int j = 0; j < 32; ++j) w[b + 2 + j] = static_cast<uint8_t>(static_cast<int8_t>(byte(rng)));
  }
  return w;
}

std::vector<uint16_t> bf16s(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_bf16(d(rng));
  return v;
}

struct Model {
  std::mt19937 rng{7};
  std::vector<std::vector<uint8_t>> blocks;
  std::vector<QuantProjectionRef> proj;
  std::vector<std::vector<uint16_t>> norms;
  std::vector<DecoderChainLayer> layers;

  Model() {
    const int64_t shapes[4][2] = {{(kH + 2 * kHkv) * kD, kHidden}, {kHidden, kH * kD}, {2 * kI, kHidden}, {kHidden, kI}};
    proj.reserve(4 * kLayers);
    for (int64_t l = 0; l < kLayers; ++l) {
      for (const auto& s : shapes) {
        blocks.push_back(q8_blocks(s[0], s[1], rng));
        proj.emplace_back(s[1], std::vector<QuantSegmentRef>{{QuantType::kQ8_0, s[0], blocks.back().data(), nullptr}},
                          nullptr);
      }
      norms.push_back(bf16s(kHidden, 1.f, rng));
      norms.push_back(bf16s(kHidden, 1.f, rng));
    }
    for (int64_t l = 0; l < kLayers; ++l)
      layers.push_back({norms[2 * l].data(), norms[2 * l + 1].data(), &proj[4 * l], &proj[4 * l + 1], &proj[4 * l + 2],
                        &proj[4 * l + 3]});
  }
};

TEST(DecoderChain, GivesTheBitsOfItsStepsOneByOne) {
  Model m;
  const DecoderChainShape shape{kHidden, kH, kHkv, kD, kI, 1e-6f};
  const int64_t n = 5;  // rows 0-2: a chain of sequence A from slot 4; rows 3-4: two branches of B
  std::mt19937 rng(3);
  auto x0 = bf16s(n * kHidden, 1.f, rng), cos = bf16s(n * kD, 0.7f, rng), sin = bf16s(n * kD, 0.7f, rng);
  auto kv_a0 = bf16s(kLayers * 2 * kHkv * kCap * kD, 1.f, rng), kv_b0 = bf16s(kLayers * 2 * kHkv * kCap * kD, 1.f, rng);
  const std::vector<int64_t> prefix = {3, 2}, own_first = {6, 7};
  const auto final_norm = bf16s(kHidden, 1.f, rng);

  auto x = x0, kv_a = kv_a0, kv_b = kv_b0;
  std::vector<uint16_t> normed(n * kHidden);
  std::vector<DecoderChainGroup> groups = {{0, 3, kv_a.data(), kCap, 4},
                                           {3, 2, kv_b.data(), kCap, 6, prefix.data(), own_first.data(), 2, 1}};
  decoder_chain_bf16(m.layers, shape, x.data(), n, cos.data(), sin.data(), groups, final_norm.data(), normed.data(),
                     2, cpu_isa_selected());

  // the same steps, one call each
  auto y = x0, ka = kv_a0, kb = kv_b0;
  const int64_t row = (kH + 2 * kHkv) * kD;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(kD)));
  std::vector<uint16_t> h(n * kHidden), qkv(n * row), att(n * kH * kD), o(n * kHidden), gu(n * 2 * kI), act(n * kI),
      want_normed(n * kHidden);
  const CpuIsa isa = cpu_isa_selected();
  rms_norm_bf16(y.data(), m.layers[0].attn_norm, n, kHidden, 1e-6f, h.data());
  for (int64_t l = 0; l < kLayers; ++l) {
    const auto& L = m.layers[l];
    L.qkv->forward_bf16(h.data(), n, qkv.data(), 1, isa);
    uint16_t* a_keys = ka.data() + l * 2 * kHkv * kCap * kD;
    uint16_t* b_keys = kb.data() + l * 2 * kHkv * kCap * kD;
    rope_store_bf16(qkv.data(), 3, kH, kHkv, kD, cos.data(), sin.data(), a_keys, a_keys + kHkv * kCap * kD, kCap, 4);
    rope_store_bf16(qkv.data() + 3 * row, 2, kH, kHkv, kD, cos.data() + 3 * kD, sin.data() + 3 * kD, b_keys,
                    b_keys + kHkv * kCap * kD, kCap, 6);
    causal_attention_bf16(qkv.data(), row, a_keys, a_keys + kHkv * kCap * kD, kCap, 3, kH, kHkv, kD, 4, scale,
                          att.data(), 1);
    branch_attention_bf16(qkv.data() + 3 * row, row, b_keys, b_keys + kHkv * kCap * kD, kCap, 2, kH, kHkv, kD,
                          prefix.data(), own_first.data(), 2, 1, scale, att.data() + 3 * kH * kD, 1);
    L.out->forward_bf16(att.data(), n, o.data(), 1, isa);
    add_rms_norm_bf16(y.data(), o.data(), L.mlp_norm, n, kHidden, 1e-6f, y.data(), h.data());
    L.gate_up->forward_bf16(h.data(), n, gu.data(), 1, isa);
    silu_mul_bf16(gu.data(), n, kI, act.data(), isa);
    L.down->forward_bf16(act.data(), n, o.data(), 1, isa);
    const uint16_t* next = l + 1 < kLayers ? m.layers[l + 1].attn_norm : final_norm.data();
    add_rms_norm_bf16(y.data(), o.data(), next, n, kHidden, 1e-6f, y.data(), l + 1 < kLayers ? h.data() : want_normed.data());
  }
  EXPECT_EQ(x, y);
  EXPECT_EQ(normed, want_normed);
  EXPECT_EQ(kv_a, ka);
  EXPECT_EQ(kv_b, kb);
  EXPECT_NE(kv_a, kv_a0);  // the rows were stored

  groups[1].row_start = 4;  // a row no group holds
  EXPECT_THROW(decoder_chain_bf16(m.layers, shape, x.data(), n, cos.data(), sin.data(), groups, nullptr, nullptr, 1, isa),
               std::invalid_argument);
  groups[1] = {3, 2, kv_b.data(), kCap, 11};  // slots past the capacity
  EXPECT_THROW(decoder_chain_bf16(m.layers, shape, x.data(), n, cos.data(), sin.data(), groups, nullptr, nullptr, 1, isa),
               std::invalid_argument);
}

}  // namespace
