// Run-time choice of the SIMD path (include/saguaro/cpu_features.hpp).
#include "saguaro/cpu_features.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace saguaro {

CpuIsa cpu_isa_supported() {
#if defined(__x86_64__) || defined(__i386__)
  static const CpuIsa isa = [] {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return avx512 ? CpuIsa::kAvx512 : avx2 ? CpuIsa::kAvx2 : CpuIsa::kScalar;
  }();
  return isa;
#else
  return CpuIsa::kScalar;
#endif
}

CpuIsa cpu_isa_selected() {
  const CpuIsa have = cpu_isa_supported();
  const char* env = std::getenv("SAGUARO_CPU_ISA");
  if (env == nullptr || *env == '\0') return have;
  return std::min(have, parse_cpu_isa(env));
}

bool cpu_amx_supported() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tile = (d >> 24) & 1u, int8 = (d >> 25) & 1u;
    if (!tile || !int8) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) return false;  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3u) != 3u) return false;  // XTILECFG and XTILEDATA enabled by the OS
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // arch_prctl (Linux >= 5.16)
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}

bool cpu_amx_selected() {
  if (!cpu_amx_supported() || cpu_isa_selected() != CpuIsa::kAvx512) return false;
  const char* env = std::getenv("SAGUARO_CPU_AMX");
  return env == nullptr || std::string(env) != "0";
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

CpuIsa parse_cpu_isa(const std::string& name) {
  if (name == "avx512") return CpuIsa::kAvx512;
  if (name == "avx2") return CpuIsa::kAvx2;
  if (name == "scalar") return CpuIsa::kScalar;
  throw std::invalid_argument("CPU ISA: expected 'avx512', 'avx2' or 'scalar' (SAGUARO_CPU_ISA), got '" + name + "'");
}

}  // namespace saguaro
