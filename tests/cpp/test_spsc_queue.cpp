#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "saguaro/spsc_queue.hpp"

using saguaro::SpscQueue;

TEST(SpscQueue, RejectsZeroCapacity) { EXPECT_THROW(SpscQueue<int>(0), std::invalid_argument); }

TEST(SpscQueue, FifoFullAndEmpty) {
  SpscQueue<int> q(3);
  int out = -1;
  EXPECT_FALSE(q.try_pop(out));
  EXPECT_TRUE(q.try_push(1));
  EXPECT_TRUE(q.try_push(2));
  EXPECT_TRUE(q.try_push(3));
  EXPECT_FALSE(q.try_push(4)) << "a full queue must refuse, not overwrite";
  EXPECT_EQ(q.size_approx(), 3u);
  ASSERT_TRUE(q.try_pop(out));
  EXPECT_EQ(out, 1);
  EXPECT_TRUE(q.try_push(5));  // wraps around
  for (int expected : {2, 3, 5}) {
    ASSERT_TRUE(q.try_pop(out));
    EXPECT_EQ(out, expected);
  }
  EXPECT_FALSE(q.try_pop(out));
  EXPECT_TRUE(q.empty_approx());
}

TEST(SpscQueue, CapacityOneWrapsManyTimes) {
  SpscQueue<int> q(1);
  int out = 0;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(q.try_push(i));
    ASSERT_FALSE(q.try_push(-1));
    ASSERT_TRUE(q.try_pop(out));
    ASSERT_EQ(out, i);
  }
}

TEST(SpscQueue, MoveOnlyItemsAndTryPushMoveKeepsValueWhenFull) {
  SpscQueue<std::unique_ptr<int>> q(1);
  auto a = std::make_unique<int>(7);
  auto b = std::make_unique<int>(8);
  ASSERT_TRUE(q.try_push_move(a));
  EXPECT_EQ(a, nullptr);
  ASSERT_FALSE(q.try_push_move(b));
  ASSERT_NE(b, nullptr) << "a failed try_push_move must leave the value with the caller";
  std::unique_ptr<int> out;
  ASSERT_TRUE(q.try_pop(out));
  EXPECT_EQ(*out, 7);
  ASSERT_TRUE(q.try_push_move(b));
  ASSERT_TRUE(q.try_pop(out));
  EXPECT_EQ(*out, 8);
}

struct NoDefault {
  explicit NoDefault(int v) : value(v) {}
  NoDefault(const NoDefault&) = default;
  NoDefault& operator=(const NoDefault&) = default;
  int value;
};

TEST(SpscQueue, ItemsNeedNoDefaultConstructor) {
  SpscQueue<NoDefault> q(2);
  ASSERT_TRUE(q.try_push(NoDefault(3)));
  NoDefault out(0);
  ASSERT_TRUE(q.try_pop(out));
  EXPECT_EQ(out.value, 3);
}

TEST(SpscQueue, DestructorDestroysQueuedItems) {
  auto token = std::make_shared<int>(1);
  {
    SpscQueue<std::shared_ptr<int>> q(4);
    ASSERT_TRUE(q.try_push(token));
    ASSERT_TRUE(q.try_push(token));
    EXPECT_EQ(token.use_count(), 3);
  }
  EXPECT_EQ(token.use_count(), 1);
}

// 1M items through a small ring between two threads; the consumer checks the exact order.
TEST(SpscQueue, StressMillionItemsInOrder) {
  constexpr uint64_t kItems = 1000000;
  SpscQueue<uint64_t> q(256);
  std::thread producer([&] {
    for (uint64_t i = 0; i < kItems; ++i) {
      while (!q.try_push(i * 2654435761u)) std::this_thread::yield();
    }
  });
  uint64_t mismatches = 0;
  for (uint64_t i = 0; i < kItems; ++i) {
    uint64_t v = 0;
    while (!q.try_pop(v)) std::this_thread::yield();
    if (v != i * 2654435761u) ++mismatches;
  }
  producer.join();
  EXPECT_EQ(mismatches, 0u);
  uint64_t extra = 0;
  EXPECT_FALSE(q.try_pop(extra));
}

// Heap-owning items across threads: ASan/TSan see every string's bytes handed over exactly once.
TEST(SpscQueue, StressStringsAcrossThreads) {
  constexpr int kItems = 40000;
  SpscQueue<std::string> q(64);
  std::thread producer([&] {
    for (int i = 0; i < kItems; ++i) {
      std::string s = "item-" + std::to_string(i) + std::string(static_cast<size_t>(i % 40), 'x');
      while (!q.try_push_move(s)) std::this_thread::yield();
    }
  });
  int bad = 0;
  for (int i = 0; i < kItems; ++i) {
    std::string s;
    while (!q.try_pop(s)) std::this_thread::yield();
    if (s != "item-" + std::to_string(i) + std::string(static_cast<size_t>(i % 40), 'x')) ++bad;
  }
  producer.join();
  EXPECT_EQ(bad, 0);
}
