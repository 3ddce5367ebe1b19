#include "saguaro/build_info.hpp"

namespace saguaro {

BuildInfo build_info() {
  BuildInfo info;
  info.version = SAGUARO_VERSION;
#ifdef SAGUARO_WITH_CUDA
  info.cuda_compiled = true;
  info.cuda_device_count = cuda_device_count(&info.cuda_error);
#endif
  return info;
}

}  // namespace saguaro
