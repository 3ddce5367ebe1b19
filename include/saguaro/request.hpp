#pragma once
// A request in the runtime's plain terms, and what poll() hands back for it.
#include <cstdint>
#include <string>
#include <vector>

#include "saguaro/metrics.hpp"

namespace saguaro {

struct RequestParams {
  float temperature = 0.f;  // 0 → greedy
  int32_t top_k = 0;
  float top_p = 1.f;
  int64_t max_new_tokens = 128;
  std::vector<int32_t> stop_token_ids;  // in addition to the target's EOS ids
  uint64_t seed = 0;
  uint64_t stream = 0;
};

// Throws std::invalid_argument naming the bad field.
void validate(const RequestParams& params);

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* finish_reason_name(FinishReason reason);  // "" | "stop" | "length" | "cancelled" | "error"

// Everything that happened to a request since its last poll.
struct RequestUpdate {
  std::vector<int32_t> tokens;        // newly committed tokens (a stop token is included)
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  std::string error;                   // set when finish_reason == kError
  std::vector<std::string> messages;   // notes, e.g. "draft worker failed: ...; continuing autoregressively"
  RequestMetrics metrics;              // meaningful once finished
};

}  // namespace saguaro
