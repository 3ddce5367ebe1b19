#pragma once
// Which SIMD instruction set the CPU kernels run with, chosen at run time.
//
// The build never uses -march=native: the AVX2 and AVX-512 code paths are compiled with function target
// attributes and picked by what this CPU reports (cpuid via __builtin_cpu_supports). The environment
// variable SAGUARO_CPU_ISA=avx512|avx2|scalar (read at every call) lowers the choice, so the tests run
// every path on an AVX-512 machine; asking for more than the CPU has falls back to what it has.
#include <string>

namespace saguaro {

// Ordered: a higher value needs everything a lower one needs.
enum class CpuIsa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// kAvx512: AVX-512 F/BW/VL/VNNI (and AVX2/FMA/F16C); kAvx2: AVX2 + FMA + F16C; else kScalar.
CpuIsa cpu_isa_supported();

// The path to run now: min(cpu_isa_supported(), $SAGUARO_CPU_ISA when set). Throws std::invalid_argument
// when the variable holds anything but avx512, avx2, scalar or nothing.
CpuIsa cpu_isa_selected();

// AMX-INT8 tiles usable by this process: the CPU has AMX-TILE and AMX-INT8, the OS enables their state
// (XCR0) and, on Linux, granted this process the tile data permission (asked once, here). The AMX
// kernels run only inside the AVX-512 path.
bool cpu_amx_supported();

// cpu_amx_supported() and the AVX-512 path selected, unless $SAGUARO_CPU_AMX=0 (read at every call, so
// the tests run the AVX-512 kernels on an AMX machine too).
bool cpu_amx_selected();

// "scalar", "avx2" or "avx512".
const char* cpu_isa_name(CpuIsa isa);

// The inverse of cpu_isa_name; std::invalid_argument naming the accepted values otherwise.
CpuIsa parse_cpu_isa(const std::string& name);

}  // namespace saguaro
