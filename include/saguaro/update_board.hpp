#pragma once
// The thread-safe event queue between the target worker (writer) and pollers (Python threads).
// Besides waiting in poll(), a poller may register a listener: the writer calls notify() after it
// commits a round (and after admissions, cancellations and failures), and the listener learns which
// requests have news, so an event loop can wake exactly the coroutines that wait on them.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "saguaro/request.hpp"

namespace saguaro {

// Called on the target worker with the ids of the requests that have new tokens or finished since the
// last call (each id once). It must be cheap and must not call back into the runtime's waiting calls.
using UpdateListener = std::function<void(const std::vector<int64_t>& request_ids)>;

class UpdateBoard {
 public:
  void open(int64_t id);
  void push_tokens(int64_t id, const std::vector<int32_t>& tokens);
  void push_message(int64_t id, std::string message);
  void finish(int64_t id, FinishReason reason, std::string error, RequestMetrics metrics);
  // Blocks until the request has something new (or timeout); throws std::invalid_argument for an
  // unknown (or already fully polled) id.
  RequestUpdate poll(int64_t id, std::optional<std::chrono::microseconds> timeout);
  bool known(int64_t id) const;

  // Replaces the listener (an empty one removes it). Thread-safe; a call in progress finishes with the old one.
  void set_listener(UpdateListener listener);
  // Writer side: hands the ids with news since the last notify() to the listener, outside every lock.
  // Without a listener the ids are dropped. A listener that throws is ignored: notification is advisory
  // (poll() still sees every update).
  void notify();

 private:
  struct Box {
    RequestUpdate pending;
  };
  void note_news(int64_t id);  // with mu_ held

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<int64_t, Box> boxes_;
  std::vector<int64_t> news_;  // ids pushed to since the last notify(), possibly repeated

  std::mutex listener_mu_;
  std::shared_ptr<const UpdateListener> listener_;
};

}  // namespace saguaro
