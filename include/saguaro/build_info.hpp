#pragma once
#include <string>

namespace saguaro {

// What this build of the core contains; reported by saguaro.build_info().
struct BuildInfo {
  std::string version;
  bool cuda_compiled = false;
  int cuda_device_count = 0;     // 0 without CUDA or without a visible device; never an error
  std::string cuda_error;        // why the count is 0 when the runtime said so, empty otherwise
};

BuildInfo build_info();

#ifdef SAGUARO_WITH_CUDA
// Implemented in cuda/device_info.cu.
int cuda_device_count(std::string* error);
#endif

}  // namespace saguaro
