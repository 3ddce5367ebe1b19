// AVX2-level helpers of the quantized GEMM shared by its AVX2 and AVX-512 paths: unpacking GGUF blocks
// (the same integers as the scalar unpackers of quant_formats.hpp) and exact integer horizontal sums. Compiled with a
// function target attribute (no -mavx2 for the build); only called from code that checked the CPU.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#define SAGUARO_QUANT_X86 1
#include <immintrin.h>

#include "quant_formats.hpp"

#define SAGUARO_TARGET_AVX2 __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace saguaro::quant::simd {

// The 32 bits at p as 32 bytes: 0xff where the bit is set (bit e -> byte e), as ggml's bytes_from_bits_32.
SAGUARO_TARGET_AVX2 __m256i bytes_from_bits_32(const uint8_t* p) {
  uint32_t x32;
  std::memcpy(&x32, p, sizeof x32);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// [Σ v0, Σ v1, ..., Σ v7] of eight vectors of 8 int32 (exact: integer adds in any order).
SAGUARO_TARGET_AVX2 __m256i transpose_sum8(const __m256i (&v)[8]) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// (Σ x, Σ y) of two vectors of 8 int32.
SAGUARO_TARGET_AVX2 void sum_pair(__m256i x, __m256i y, int32_t& sx, int32_t& sy) {
  const __m256i h = _mm256_hadd_epi32(x, y);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_hadd_epi32(s, s);
  sx = _mm_cvtsi128_si32(s);
  sy = _mm_extract_epi32(s, 1);
}

SAGUARO_TARGET_AVX2 int32_t sum8(__m256i x) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
  s = _mm_hadd_epi32(s, s);
  s = _mm_hadd_epi32(s, s);
  return _mm_cvtsi128_si32(s);
}

// Bits shift..shift+1 of every byte of qh, moved to bits 4..5 (Q6_K's high bits).
SAGUARO_TARGET_AVX2 __m256i q6_high(__m256i qh, int shift, __m256i three) {
  return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, shift), three), 4);
}

// The scales of a K-quant super-block: sc and mn per 16 values (int16 [16]) and d, dmin. Built in
// registers (no store-to-load round trip); the same integers as unpack_scales_a.
struct ScalesA {
  __m256i sc, mn;
  float d, dmin;
};

SAGUARO_TARGET_AVX2 ScalesA scales_a(QuantType t, const uint8_t* blk) {
  ScalesA s;
  if (t == QuantType::kQ4_K) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(blk);
    s.d = _cvtsh_ss(load_u16(&b->d));
    s.dmin = _cvtsh_ss(load_u16(&b->dmin));
    uint32_t u0, u1, u2;
    std::memcpy(&u0, b->scales, 4);
    std::memcpy(&u1, b->scales + 4, 4);
    std::memcpy(&u2, b->scales + 8, 4);
    constexpr uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
    // ggml's 6-bit unpacking: sc0..7 in s0, s1 and m0..7 in s2, s3
    const uint32_t s3 = ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4);
    const uint32_t s2 = u1 & k1;
    const uint32_t s1 = (u2 & k2) | (((u0 >> 6) & k3) << 4);
    const uint32_t s0 = u0 & k1;
    const __m128i sm = _mm_set_epi32(static_cast<int>(s3), static_cast<int>(s2), static_cast<int>(s1),
                                     static_cast<int>(s0));
    // each byte twice (a scale per 16 values), widened to int16
    const __m128i dup = _mm_unpacklo_epi8(sm, sm), dupm = _mm_unpackhi_epi8(sm, sm);
    s.sc = _mm256_cvtepu8_epi16(dup);
    s.mn = _mm256_cvtepu8_epi16(dupm);
  } else {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(blk);
    s.d = s.dmin = _cvtsh_ss(load_u16(&b->d));
    s.sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
    s.mn = _mm256_slli_epi16(s.sc, 5);
  }
  return s;
}

// Block j of a kind B group: Q5_0 as q in 0..31; Q8_0 as the signed value (plus128 false: the AVX2 sign
// trick) or the value + 128 (plus128 true: u8 for vpdpbusd). Returns d.
SAGUARO_TARGET_AVX2 float unpack_b(QuantType t, const uint8_t* blk, uint8_t* q, bool plus128) {
  if (t == QuantType::kQ5_0) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(blk);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs));
    const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0f));
    const __m256i high = _mm256_and_si256(bytes_from_bits_32(b->qh), _mm256_set1_epi8(0x10));
    _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_or_si256(nib, high));
    return _cvtsh_ss(load_u16(&b->d));
  }
  const auto* b = reinterpret_cast<const BlockQ8_0*>(blk);
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs));
  if (plus128) v = _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
  _mm256_store_si256(reinterpret_cast<__m256i*>(q), v);
  return _cvtsh_ss(load_u16(&b->d));
}

}  // namespace saguaro::quant::simd

#endif  // x86
