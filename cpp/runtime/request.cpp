#include "saguaro/request.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace saguaro {

void validate(const RequestParams& p) {
  if (!(p.temperature >= 0.f) || !std::isfinite(p.temperature))
    throw std::invalid_argument("temperature must be a finite number >= 0, got " + std::to_string(p.temperature));
  if (p.top_k < 0) throw std::invalid_argument("top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.f && p.top_p <= 1.f))
    throw std::invalid_argument("top_p must be in (0, 1], got " + std::to_string(p.top_p));
  if (p.max_new_tokens < 1)
    throw std::invalid_argument("max_new_tokens must be >= 1, got " + std::to_string(p.max_new_tokens));
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "";
}

}  // namespace saguaro
