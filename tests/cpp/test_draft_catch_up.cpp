// The draft's background catch-up (target_worker.hpp, draft_worker.cpp): a prefill message for a
// sequence the draft already holds brings its KV to every committed token but the pending one, and a
// chain drafted after it is the draft's own greedy continuation of the whole sequence.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "saguaro/draft_worker.hpp"
#include "saguaro/transport.hpp"
#include "test_runtime_helpers.hpp"

namespace saguaro {
namespace {

void wait_handled(const DraftWorker& w, uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (w.messages_handled() < n && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(w.messages_handled(), n);
}

DraftRow row(int64_t seq, int64_t from, std::vector<int32_t> committed) {
  DraftRow r;
  r.seq = seq;
  r.committed_from = from;
  r.committed = std::move(committed);
  r.params.temperature = 0.f;
  return r;
}

TEST(DraftCatchUp, APrefillMessageBringsAKnownSequenceToItsPendingToken) {
  auto draft = std::make_shared<testing::ToyModel>(testing::target_options());
  InProcessTransport<ToDraft, ToTarget> transport(16);
  DraftWorker worker(draft, transport, {}, {});
  worker.start();
  std::vector<int32_t> prompt, later;
  for (int32_t i = 0; i < 10; ++i) prompt.push_back((i * 7 + 3) % 24);
  for (int32_t i = 0; i < 20; ++i) later.push_back((i * 5 + 1) % 24);
  ToDraft admit;
  admit.kind = ToDraft::Kind::kPrefill;
  admit.rows.push_back(row(7, 0, prompt));
  transport.send_to_draft(admit);
  wait_handled(worker, 1);
  EXPECT_EQ(draft->length(7), 10) << "a new sequence: its prompt prefilled whole";
  // 20 tokens committed by plain rounds, the last of them the pending token: caught up to it
  ToDraft catch_up;
  catch_up.kind = ToDraft::Kind::kPrefill;
  catch_up.rows.push_back(row(7, 10, later));
  transport.send_to_draft(catch_up);
  wait_handled(worker, 2);
  EXPECT_EQ(draft->length(7), 29);
  // a chain from the pending token: the draft's greedy continuation of prompt + later
  ToDraft chain;
  chain.kind = ToDraft::Kind::kChain;
  chain.round = 1;
  DraftRow c = row(7, 30, {});
  c.n = 4;
  chain.rows.push_back(c);
  transport.send_to_draft(chain);
  ToTarget reply;
  ASSERT_TRUE(transport.receive_at_target(reply, std::chrono::seconds(10)));
  ASSERT_EQ(reply.kind, ToTarget::Kind::kChainResult) << reply.error;
  std::vector<int32_t> whole = prompt;
  whole.insert(whole.end(), later.begin(), later.end());
  EXPECT_EQ(reply.results.at(0).tokens, testing::greedy_reference(*draft, whole, 4, {}));
  ToDraft stop;
  stop.kind = ToDraft::Kind::kStop;
  transport.send_to_draft(stop);
  worker.join();
}

}  // namespace
}  // namespace saguaro
