#include <cuda_runtime.h>

#include <string>

#include "saguaro/build_info.hpp"

namespace saguaro {

int cuda_device_count(std::string* error) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    // A GPU-less machine answers cudaErrorNoDevice or cudaErrorInsufficientDriver: that is 0 devices.
    if (error) *error = cudaGetErrorString(status);
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace saguaro
