#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "saguaro/transport.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Tp = saguaro::InProcessTransport<int, std::string>;

TEST(Transport, DeliversBothDirections) {
  Tp t(4);
  t.send_to_draft(11);
  t.send_to_target("hit");
  int d = 0;
  std::string s;
  ASSERT_TRUE(t.receive_at_draft(d, 0us));
  ASSERT_TRUE(t.receive_at_target(s, 0us));
  EXPECT_EQ(d, 11);
  EXPECT_EQ(s, "hit");
  EXPECT_FALSE(t.closed());
}

TEST(Transport, ReceiveTimesOutWithoutMessage) {
  Tp t;
  int d = 0;
  const auto start = Clock::now();
  EXPECT_FALSE(t.receive_at_draft(d, 20ms));
  // The receive must have waited its whole timeout (a lower bound, not a speed threshold).
  EXPECT_GE(Clock::now() - start, 20ms);
  EXPECT_FALSE(t.receive_at_draft(d, 0us));
  EXPECT_FALSE(t.receive_at_draft(d, -5us)) << "a negative timeout is a poll";
}

TEST(Transport, SendWakesSleepingReceiver) {
  Tp t;
  std::atomic<bool> got{false};
  int value = 0;
  std::thread receiver([&] { got = t.receive_at_draft(value, std::chrono::microseconds(30s)); });
  std::this_thread::sleep_for(30ms);  // let the receiver pass its spin phase and sleep
  t.send_to_draft(42);
  receiver.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ(value, 42);
}

TEST(Transport, CloseWakesEveryWaiterBeforeTheirTimeout) {
  Tp t;
  constexpr auto kLong = std::chrono::microseconds(30s);
  std::atomic<int> returned_false{0};
  Clock::duration draft_wait{}, target_wait{};
  std::thread draft([&] {
    int d = 0;
    const auto s = Clock::now();
    if (!t.receive_at_draft(d, kLong)) ++returned_false;
    draft_wait = Clock::now() - s;
  });
  std::thread target([&] {
    std::string m;
    const auto s = Clock::now();
    if (!t.receive_at_target(m, kLong)) ++returned_false;
    target_wait = Clock::now() - s;
  });
  std::this_thread::sleep_for(30ms);
  t.close();
  draft.join();
  target.join();
  EXPECT_EQ(returned_false.load(), 2);
  // Returned because close() woke them, not because 30 s passed.
  EXPECT_LT(draft_wait, kLong);
  EXPECT_LT(target_wait, kLong);
  EXPECT_TRUE(t.closed());
}

TEST(Transport, CloseDrainsQueuedMessagesThenReturnsFalse) {
  Tp t;
  t.send_to_draft(1);
  t.send_to_draft(2);
  t.close();
  t.close();  // idempotent
  int d = 0;
  ASSERT_TRUE(t.receive_at_draft(d, 1s));
  EXPECT_EQ(d, 1);
  ASSERT_TRUE(t.receive_at_draft(d, 1s));
  EXPECT_EQ(d, 2);
  const auto s = Clock::now();
  EXPECT_FALSE(t.receive_at_draft(d, std::chrono::microseconds(30s)));
  EXPECT_LT(Clock::now() - s, 30s);
}

TEST(Transport, SendAfterCloseIsDiscarded) {
  Tp t(1);
  t.close();
  t.send_to_draft(5);
  t.send_to_draft(6);  // would block forever on a full queue if it were not discarded
  int d = 0;
  EXPECT_FALSE(t.receive_at_draft(d, 0us));
}

TEST(Transport, SenderWaitsOnFullQueueInsteadOfDropping) {
  saguaro::InProcessTransport<int, int> t(2);
  constexpr int kItems = 2000;
  std::thread sender([&] {
    for (int i = 0; i < kItems; ++i) t.send_to_draft(i);
  });
  int bad = 0;
  for (int i = 0; i < kItems; ++i) {
    int v = -1;
    if (!t.receive_at_draft(v, std::chrono::microseconds(10s)) || v != i) ++bad;
  }
  sender.join();
  EXPECT_EQ(bad, 0);
}

TEST(Transport, CloseReleasesSenderBlockedOnFullQueue) {
  saguaro::InProcessTransport<int, int> t(1);
  t.send_to_draft(0);
  std::thread sender([&] { t.send_to_draft(1); });  // full: waits
  std::this_thread::sleep_for(20ms);
  t.close();
  sender.join();  // must return: close() releases it
  int v = -1;
  ASSERT_TRUE(t.receive_at_draft(v, 0us));
  EXPECT_EQ(v, 0);
}

TEST(Transport, MoveOnlyMessages) {
  saguaro::InProcessTransport<std::unique_ptr<int>, std::unique_ptr<int>> t(2);
  t.send_to_draft(std::make_unique<int>(3));
  std::unique_ptr<int> out;
  ASSERT_TRUE(t.receive_at_draft(out, 0us));
  EXPECT_EQ(*out, 3);
}

// Round trips like the runtime's: target sends work, draft answers; both sleep between messages.
TEST(Transport, StressPingPong) {
  saguaro::InProcessTransport<int, int> t(8);
  constexpr int kRounds = 8000;
  std::thread draft([&] {
    int v = 0;
    while (t.receive_at_draft(v, std::chrono::microseconds(5s))) t.send_to_target(v + 1);
  });
  int bad = 0;
  for (int i = 0; i < kRounds; ++i) {
    t.send_to_draft(i);
    int r = -1;
    if (!t.receive_at_target(r, std::chrono::microseconds(5s)) || r != i + 1) ++bad;
  }
  t.close();
  draft.join();
  EXPECT_EQ(bad, 0);
}

TEST(Transport, ForeverTimeoutDoesNotOverflow) {
  Tp t;
  int value = 0;
  std::atomic<bool> got{false};
  std::thread receiver([&] { got = t.receive_at_draft(value, std::chrono::microseconds::max()); });
  std::this_thread::sleep_for(20ms);
  t.send_to_draft(9);
  receiver.join();
  EXPECT_TRUE(got.load()) << "an overflowing deadline would have returned false at once";
  EXPECT_EQ(value, 9);
  std::thread closer([&] {
    std::this_thread::sleep_for(20ms);
    t.close();
  });
  EXPECT_FALSE(t.receive_at_draft(value, std::chrono::microseconds::max()));
  closer.join();
}
