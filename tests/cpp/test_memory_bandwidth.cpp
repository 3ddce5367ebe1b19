// The memory read-bandwidth probe (include/saguaro/memory_bandwidth.hpp): it reads and it refuses bad
// arguments with messages naming them. No speed threshold: only that a pass happened.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "saguaro/memory_bandwidth.hpp"

namespace {

std::string message_of(void (*call)()) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(MemoryBandwidth, ReadsABufferOnSeveralThreads) {
  const double one = saguaro::memory_read_bandwidth(int64_t{4} << 20, 1, 2);
  const double two = saguaro::memory_read_bandwidth((int64_t{4} << 20) + 24, 2, 1);  // uneven parts
  EXPECT_GT(one, 0.0);
  EXPECT_GT(two, 0.0);
}

TEST(MemoryBandwidth, RefusesBadArguments) {
  EXPECT_NE(message_of([] { saguaro::memory_read_bandwidth(1024, 1, 1); }).find("bytes"), std::string::npos);
  EXPECT_NE(message_of([] { saguaro::memory_read_bandwidth(int64_t{1} << 20, 0, 1); }).find("threads"),
            std::string::npos);
  EXPECT_NE(message_of([] { saguaro::memory_read_bandwidth(int64_t{1} << 20, 1, 0); }).find("reps"),
            std::string::npos);
}

}  // namespace
