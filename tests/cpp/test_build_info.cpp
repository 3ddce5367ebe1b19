#include <gtest/gtest.h>

#include "saguaro/build_info.hpp"

TEST(BuildInfo, ReportsVersionAndNeverFailsWithoutGpu) {
  auto info = saguaro::build_info();
  EXPECT_FALSE(info.version.empty());
  EXPECT_GE(info.cuda_device_count, 0);
}
