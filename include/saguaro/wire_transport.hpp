#pragma once
// Transports whose messages travel as bytes (wire_format.hpp) to a draft in another process or on
// another host. The C++ side only frames and queues; a link outside (saguaro.distributed.link, over
// torch.distributed) moves the frames with next_frame() / deliver() and reports a dead peer with
// fail(). Frames are kept in order in each direction, so a tree's entries (in its kTreeDone) are in
// the target's cache before the target reads that kTreeDone.
//
// Connection epochs (TargetWire): after fail(), what the target sends is dropped and the target worker
// gets one kError (it continues autoregressively). Once the target worker has taken that kError
// (failure_seen()), the link may attach a new draft: reconnected() starts a new epoch, and the target
// worker, seeing epoch() change, re-sends every sequence whole (the new draft knows none). Waiting for
// the kError to be taken means nothing of the old epoch is still queued or awaited when the new one starts.
//
// Sampled entries' q rows (remote_q.hpp): the DraftWire keeps them from each kTreeDone it sends (the
// two newest generations) and answers a kQRequest itself, on the link's receiving thread, so the
// answer never waits for the draft worker. The TargetWire keeps the entries' tokens in a cache of its
// own and sends the kQRequest when the target's lookup hits one.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "saguaro/blocking_queue.hpp"
#include "saguaro/draft_messages.hpp"
#include "saguaro/remote_q.hpp"
#include "saguaro/transport.hpp"

namespace saguaro {

using DraftTransport = Transport<ToDraft, ToTarget>;

// What a wire end has carried (read by metrics; the link adds its own time on the wire).
struct WireStats {
  int64_t frames_out = 0, frames_in = 0;
  int64_t bytes_out = 0, bytes_in = 0;
  int64_t entries_in = 0;       // cache entries received in kTreeDone frames (target end)
  int64_t q_requests = 0;       // q rows asked for (target end) / answered (draft end)
  int64_t q_answered = 0;       // ... answers that carried the rows (target end: received in time or late)
  int64_t q_bytes = 0;          // bytes of those answers
  int64_t q_held = 0;           // sampled entries whose q rows stayed with the draft (draft end: kept)
  int64_t failures = 0;         // fail() calls that took the link down
  uint64_t epoch = 0;
};

// The target's end: the target worker talks to it as to any transport.
class TargetWire final : public DraftTransport, public RemoteEntries {
 public:
  void send_to_draft(ToDraft msg) override;
  bool receive_at_target(ToTarget& out, std::chrono::microseconds timeout) override;
  // The draft's directions are on the other host: calling them here is a defect (std::logic_error).
  void send_to_target(ToTarget msg) override;
  bool receive_at_draft(ToDraft& out, std::chrono::microseconds timeout) override;
  void close() override;
  bool closed() const override;
  uint64_t epoch() const override { return epoch_.load(std::memory_order_acquire); }
  bool lookup_remote(uint64_t generation, const CacheKey& key, std::vector<int32_t>* tokens,
                     std::shared_ptr<RemoteQ>* q) override;

  // -- the link's side --
  bool next_frame(std::string& out, std::chrono::microseconds timeout);  // false on timeout / closed
  void deliver(std::string_view frame);   // WireError on a frame that does not decode
  void fail(const std::string& reason);   // the draft is gone: the target worker gets one kError
  void reconnected();                     // a new draft is attached: a new epoch (call once failure_seen())
  bool down() const;
  bool failure_seen() const { return failure_seen_.load(std::memory_order_acquire); }  // the kError was taken
  WireStats stats() const;

 private:
  BlockingQueue<std::string> out_;
  BlockingQueue<ToTarget> in_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<bool> failure_seen_{false};
  mutable std::mutex mu_;  // guards what follows
  bool down_ = false;
  std::shared_ptr<SpeculationCache> cache_, q_cache_;  // where the draft's entries go
  std::shared_ptr<SpeculationCache> held_;  // tokens of sampled entries whose q rows the draft holds
  std::map<std::tuple<uint64_t, int64_t, int32_t, int32_t>, std::shared_ptr<RemoteQ>> asked_;  // awaiting an answer
  WireStats stats_;
};

// The draft's end, in the draft-server: the draft worker talks to it as to any transport.
class DraftWire final : public DraftTransport {
 public:
  void send_to_target(ToTarget msg) override;
  bool receive_at_draft(ToDraft& out, std::chrono::microseconds timeout) override;
  void send_to_draft(ToDraft msg) override;       // std::logic_error: the target is on the other host
  bool receive_at_target(ToTarget& out, std::chrono::microseconds timeout) override;  // likewise
  void close() override;
  bool closed() const override;

  bool next_frame(std::string& out, std::chrono::microseconds timeout);
  void deliver(std::string_view frame);   // WireError on a frame that does not decode
  WireStats stats() const;

 private:
  void answer_q(const ToDraft& request);

  BlockingQueue<std::string> out_;
  BlockingQueue<ToDraft> in_;
  mutable std::mutex mu_;
  // q rows of the sampled entries sent, by (generation, seq, accepted, bonus): the two newest generations
  std::map<std::tuple<uint64_t, int64_t, int32_t, int32_t>, std::vector<float>> held_;
  WireStats stats_;
};

}  // namespace saguaro
