// GGUF block layouts (as ggml defines them), their canonical unpacked forms and the int8 activation
// blocks the quantized GEMM (include/saguaro/quant_gemm.hpp) multiplies them with.
//
// Every format is reduced to one of two integer forms, so each path has two dot-product kernels:
//   kind A (K-quants, 256 values): w_e = d * sc[e / 16] * q_e - dmin * mn[e / 16], q_e in 0..63 (u8),
//     sc, mn small integers per 16 values.  Q4_K: sc, mn = the 6-bit scale and min of the 32-value
//     sub-block, q the nibble.  Q6_K: q = the 6-bit value, sc = the int8 scale, mn = 32 * sc, dmin = d
//     (so w = d * sc * (q - 32)).
//   kind B (32 values): w_e = d * (q_e - offset) with q_e u8.  Q5_0: q = 5 bits, offset 16.
//     Q8_0: q = the int8 value + 128, offset 128.
// Unpacking is exact (integers and fp16 -> fp32), so all paths see the same numbers.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <stdexcept>
#include <vector>

#include "saguaro/cpu_features.hpp"
#include "saguaro/quant_gemm.hpp"

namespace saguaro::quant {

constexpr int64_t kSuper = 256;  // values per K-quant super-block
constexpr int64_t kSmall = 32;   // values per Q8_0 / Q5_0 block
constexpr int kGroup = 8;        // Q8_0 / Q5_0 blocks handled together (and the accumulator lanes)

struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ4_K { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ5_0) == 22, "ggml block sizes");
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ6_K) == 210, "ggml block sizes");

inline bool is_kquant(QuantType t) { return t == QuantType::kQ4_K || t == QuantType::kQ6_K; }

// IEEE half -> float, exact (subnormals included).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    int e = -1;
    do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
    bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Q4_K's 6-bit scale and min of sub-block j (0..7), as ggml's get_scale_min_k4.
inline void q4k_scale_min(int j, const uint8_t* s, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// One K-quant super-block unpacked (kind A).
struct UnpackedA {
  alignas(64) uint8_t q[kSuper];
  alignas(64) int16_t scv[kSuper / 2];  // for each 32 values: sc of values 0..15 x 8, then of 16..31 x 8
  alignas(32) int16_t sc[16];
  alignas(32) int16_t mn[16];
  float d, dmin;
};

// The scales part (everything but q) of a super-block; q is filled by the path's own unpacker.
inline void unpack_scales_a(QuantType t, const uint8_t* blk, UnpackedA& u) {
  if (t == QuantType::kQ4_K) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(blk);
    u.d = half_to_float(load_u16(&b->d));
    u.dmin = half_to_float(load_u16(&b->dmin));
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      q4k_scale_min(j, b->scales, sc, mn);
      u.sc[2 * j] = u.sc[2 * j + 1] = static_cast<int16_t>(sc);
      u.mn[2 * j] = u.mn[2 * j + 1] = static_cast<int16_t>(mn);
    }
  } else {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(blk);
    u.d = u.dmin = half_to_float(load_u16(&b->d));
    for (int j = 0; j < 16; ++j) {
      u.sc[j] = b->scales[j];
      u.mn[j] = static_cast<int16_t>(32 * b->scales[j]);
    }
  }
  for (int j = 0; j < 16; ++j)
    for (int i = 0; i < 8; ++i) u.scv[j * 8 + i] = u.sc[j];
}

// The quants of a super-block, one value at a time (the scalar path and the reference).
inline void unpack_q_a_scalar(QuantType t, const uint8_t* blk, uint8_t* q) {
  if (t == QuantType::kQ4_K) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(blk);
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) {
        q[64 * g + l] = b->qs[32 * g + l] & 0x0f;
        q[64 * g + 32 + l] = b->qs[32 * g + l] >> 4;
      }
  } else {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(blk);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b->ql + 64 * h;
      const uint8_t* qh = b->qh + 32 * h;
      uint8_t* o = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        o[l] = static_cast<uint8_t>((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
        o[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
        o[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
        o[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
      }
    }
  }
}

// Up to kGroup small blocks unpacked (kind B); blocks past `count` are zero.
struct UnpackedB {
  alignas(64) uint8_t q[kGroup * kSmall];
  alignas(32) float d[kGroup];
  int offset;  // 16 (Q5_0) or 128 (Q8_0)
};

inline int offset_b(QuantType t) { return t == QuantType::kQ5_0 ? 16 : 128; }

inline void unpack_block_b_scalar(QuantType t, const uint8_t* blk, uint8_t* q, float& d) {
  if (t == QuantType::kQ5_0) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(blk);
    d = half_to_float(load_u16(&b->d));
    uint32_t qh;
    std::memcpy(&qh, b->qh, sizeof qh);
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<uint8_t>((b->qs[j] & 0x0f) | (((qh >> j) & 1u) << 4));
      q[j + 16] = static_cast<uint8_t>((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
    }
  } else {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(blk);
    d = half_to_float(load_u16(&b->d));
    for (int j = 0; j < 32; ++j) q[j] = static_cast<uint8_t>(b->qs[j] + 128);
  }
}

// M activation rows quantized to int8 per block of `block` values (256 for K-quants, 32 otherwise).
struct QuantActivations {
  int64_t M = 0, K = 0, block = 0;
  std::vector<int8_t> q;        // [M, K]
  std::vector<float> d;         // [M, K / block]
  std::vector<int16_t> bsum16;  // [M, K / 16]: sums of 16 consecutive q (K-quants)
  std::vector<int16_t> bsum32k;  // [M, K / 32]: sums of 32 consecutive q (K-quants, the repacked Q4_K)
  std::vector<int32_t> bsum32;  // [M, K / 32]: sums of 32 consecutive q (Q8_0 / Q5_0)

  const int8_t* row_q(int64_t m) const { return q.data() + m * K; }
  const float* row_d(int64_t m) const { return d.data() + m * (K / block); }
};

// Scale max|x| / 127 per block, q = round-half-even(x * (127 / max|x|)) clamped to +-127; all zero for
// a block of zeros. Every path multiplies the same integers: the vector paths (quantize_activations.cpp)
// compute exactly this routine's numbers (max is exact in any order; one IEEE multiply, one rounding).
inline void quantize_activations_reference(const float* x, int64_t M, int64_t K, int64_t block,
                                           QuantActivations& a);

// The activations quantized on `isa`'s path (the same bits on every path); sizes a's buffers.
void quantize_activations(const float* x, int64_t M, int64_t K, int64_t block, QuantActivations& a, CpuIsa isa);

// a's buffers sized for M x K in blocks of `block`.
inline void size_activations(int64_t M, int64_t K, int64_t block, QuantActivations& a) {
  a.M = M;
  a.K = K;
  a.block = block;
  a.q.resize(static_cast<size_t>(M * K));
  a.d.resize(static_cast<size_t>(M * (K / block)));
  if (block == kSuper) {
    a.bsum16.resize(static_cast<size_t>(M * (K / 16)));
    a.bsum32k.resize(static_cast<size_t>(M * (K / 32)));
  }
  else a.bsum32.resize(static_cast<size_t>(M * (K / 32)));
}

// Row m's block sums from its quantized values (bsum16 and bsum32k for K-quants, bsum32 otherwise).
inline void activation_block_sums(int64_t m, QuantActivations& a) {
  const int64_t K = a.K;
  const int8_t* qr = a.q.data() + m * K;
  if (a.block == kSuper) {
    for (int64_t g = 0; g < K / 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += qr[g * 16 + i];
      a.bsum16[m * (K / 16) + g] = static_cast<int16_t>(s);
    }
    for (int64_t g = 0; g < K / 32; ++g)  // |sum| <= 32 * 127: fits int16
      a.bsum32k[m * (K / 32) + g] =
          static_cast<int16_t>(a.bsum16[m * (K / 16) + 2 * g] + a.bsum16[m * (K / 16) + 2 * g + 1]);
  } else {
    for (int64_t g = 0; g < K / 32; ++g) {
      int s = 0;
      for (int i = 0; i < 32; ++i) s += qr[g * 32 + i];
      a.bsum32[m * (K / 32) + g] = s;
    }
  }
}

inline void quantize_activations_reference(const float* x, int64_t M, int64_t K, int64_t block,
                                           QuantActivations& a) {
  size_activations(M, K, block, a);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t b = 0; b < K / block; ++b) {
      const float* xs = x + m * K + b * block;
      int8_t* qs = a.q.data() + m * K + b * block;
      float amax = 0.f;
      for (int64_t i = 0; i < block; ++i) amax = std::fmax(amax, std::fabs(xs[i]));
      const float iscale = amax > 0.f ? 127.f / amax : 0.f;
      a.d[m * (K / block) + b] = amax / 127.f;
      for (int64_t i = 0; i < block; ++i) {
        const float v = std::nearbyint(xs[i] * iscale);
        qs[i] = static_cast<int8_t>(std::fmin(127.f, std::fmax(-127.f, v)));
      }
    }
    activation_block_sums(m, a);
  }
}

// imin of a super-block: Σ_j mn_j bsum16_j (exact in int32).
inline int32_t kind_a_min_sum(const UnpackedA& u, const int16_t* bsum16) {
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += static_cast<int32_t>(u.mn[j]) * bsum16[j];
  return s;
}

// The canonical float steps (the header's contract), shared by every path.
inline float kind_a_step(float acc, float d, float dmin, float da, int32_t isum, int32_t imin) {
  acc = __builtin_fmaf(d * da, static_cast<float>(isum), acc);
  return __builtin_fmaf(-(dmin * da), static_cast<float>(imin), acc);
}

// One super-block of row m in the reference order (the scalar paths of every kind A layout): the exact
// isum = Σ_j sc_j Σ_{e in j} q_e a_e and imin, then kind_a_step.
inline float kind_a_block_reference(const UnpackedA& u, const QuantActivations& a, int64_t m, int64_t b, float acc) {
  const int8_t* aq = a.row_q(m) + b * kSuper;
  int32_t isum = 0;
  for (int j = 0; j < 16; ++j) {
    int32_t s = 0;
    for (int e = 0; e < 16; ++e) s += u.q[16 * j + e] * aq[16 * j + e];
    isum += u.sc[j] * s;
  }
  const int32_t imin = kind_a_min_sum(u, a.bsum16.data() + m * (a.K / 16) + b * 16);
  return kind_a_step(acc, u.d, u.dmin, a.row_d(m)[b], isum, imin);
}

inline float kind_b_lane_step(float lane, float d, float da, int32_t isum) {
  return __builtin_fmaf(d * da, static_cast<float>(isum), lane);
}

inline float kind_b_reduce(const float* l) {
  const float s0 = l[0] + l[4], s1 = l[1] + l[5], s2 = l[2] + l[6], s3 = l[3] + l[7];
  return (s0 + s2) + (s1 + s3);
}

// The columns [n0, n1) of one call on one path (each path's translation unit defines its own).
// w: the first weight row; row_bytes: bytes per weight row; y: output [M, ldy].
void columns_scalar(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                    int64_t n1, float* y, int64_t ldy);
void columns_avx2(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                  int64_t n1, float* y, int64_t ldy);
void columns_avx512(QuantType t, const uint8_t* w, int64_t row_bytes, const QuantActivations& a, int64_t n0,
                    int64_t n1, float* y, int64_t ldy);

// The arguments every quantized GEMM entry point shares (rows, output stride, pointers, threads, the
// SIMD path); std::invalid_argument prefixed with the entry point's name.
inline void check_gemm_call(const char* who, int64_t M, int64_t N, int64_t ldy, const void* w, const float* x,
                            const float* y, int threads, CpuIsa isa) {
  const auto bad = [who](const std::string& what) { throw std::invalid_argument(std::string(who) + ": " + what); };
  if (M < 1) bad("M (rows of x) must be >= 1, got " + std::to_string(M));
  if (N < 1) bad("N (out_features) must be >= 1, got " + std::to_string(N));
  if (ldy < N) bad("ldy must be >= N (" + std::to_string(N) + "), got " + std::to_string(ldy));
  if (w == nullptr || x == nullptr || y == nullptr) bad("weights, x and y must not be null");
  if (threads < 1) bad("threads must be >= 1, got " + std::to_string(threads));
  if (isa > cpu_isa_supported())
    bad(std::string("path '") + cpu_isa_name(isa) + "' was asked for but this CPU supports only '" +
        cpu_isa_name(cpu_isa_supported()) + "'");
}

}  // namespace saguaro::quant
