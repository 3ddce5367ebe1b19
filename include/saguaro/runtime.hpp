#pragma once
// The asynchronous target/draft runtime (docs/algorithm.md §1-§5, docs/architecture.md "One SSD round, step by step").
// A target worker thread runs the rounds; in ssd a draft worker thread builds the speculation cache
// while the target verifies, and serves chain drafting (sd and jit backups). The draft model is
// only ever called from the draft worker, the target model only from the target worker.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "saguaro/metrics.hpp"
#include "saguaro/model.hpp"
#include "saguaro/request.hpp"
#include "saguaro/runtime_config.hpp"
#include "saguaro/update_board.hpp"
#include "saguaro/wire_transport.hpp"

namespace saguaro {

class Runtime {
 public:
  // draft may be null in mode ar. Throws std::invalid_argument on a bad config or vocab mismatch.
  Runtime(std::shared_ptr<Model> target, std::shared_ptr<Model> draft, RuntimeConfig config);
  // A draft in another process or on another host, behind `wire` (its link is the caller's):
  // draft_vocab and draft_max_context are what the draft-server announced. Throws
  // std::invalid_argument for mode ar, a null wire or a vocabulary that differs from the target's.
  Runtime(std::shared_ptr<Model> target, std::shared_ptr<TargetWire> wire, int64_t draft_vocab,
          int64_t draft_max_context, RuntimeConfig config);
  ~Runtime();  // close()
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Thread-safe; the request joins between rounds. Throws std::invalid_argument on an empty prompt,
  // token ids outside the vocabulary or bad params; std::runtime_error after close().
  // The id is unique in the process (across runtimes): it is also the sequence id in the models, which
  // several runtimes may share.
  int64_t submit(std::vector<int32_t> prompt, RequestParams params);
  // Waits (up to timeout; forever when empty) until the request has new tokens or finished.
  // A finished request's last update is handed out once; afterwards its id is unknown
  // (std::invalid_argument).
  RequestUpdate poll(int64_t request_id, std::optional<double> timeout_s);
  void cancel(int64_t request_id);   // finishes it with "cancelled" between rounds; unknown ids ignored
  RuntimeMetrics metrics() const;
  const RuntimeConfig& config() const;  // as validated at construction
  // Calls `listener` on the target worker with the ids of requests that have news (new tokens or
  // finished), once per round for all of them, after the round commits; poll() then returns at once
  // for those ids. For event loops that wait on many requests without a thread each. An empty
  // function removes it. Thread-safe; the listener must be cheap and must not wait on the runtime.
  void set_update_callback(UpdateListener listener);
  // Finishes requests in flight with "cancelled", joins both workers. Idempotent.
  void close();

  struct Impl;
 private:
  // Creates and starts the workers; draft_idle (in-process drafts only) tells the target worker when
  // the draft has no work.
  void start(int64_t draft_context, std::function<bool()> draft_idle);
  std::unique_ptr<Impl> impl_;
};

}  // namespace saguaro
