#pragma once
// The thread-safe event queue between the target worker (writer) and pollers (Python threads).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "saguaro/request.hpp"

namespace saguaro {

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

 private:
  struct Box {
    RequestUpdate pending;
  };
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<int64_t, Box> boxes_;
};

}  // namespace saguaro
