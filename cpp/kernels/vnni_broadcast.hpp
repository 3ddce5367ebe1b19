// vpdpbusd with its activation quad as an embedded-broadcast memory operand ({1to16}). The interleaved
// kernels multiply one broadcast quad of 4 int8 activations by 16 columns per instruction; written as
// _mm512_set1_epi32(load) + _mm512_dpbusd_epi32, GCC 12 emits a separate vpbroadcastd, one more vector
// uop per vpdpbusd, which on Zen 4 (about one 512-bit op per cycle here) costs a multi-row product ~30%.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstdint>

namespace saguaro::quant {

// acc + Σ_{e < 4} w[lane, e] * q[e] per int32 lane (w u8, q the 4 int8 at p).
__attribute__((target("avx512f,avx512vnni"), always_inline)) inline __m512i dpbusd_broadcast(__m512i acc, __m512i w,
                                                                                              const int8_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
  return acc;
}

}  // namespace saguaro::quant

#endif  // x86
