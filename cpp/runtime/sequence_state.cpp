#include "saguaro/sequence_state.hpp"

#include <algorithm>

namespace saguaro {

SequenceState::SequenceState(int64_t id, std::vector<int32_t> prompt, RequestParams params, int32_t k,
                             Clock::time_point submitted_at)
    : metrics(k),
      submitted(submitted_at),
      id_(id),
      params_(std::move(params)),
      tokens_(std::move(prompt)),
      prompt_length_(static_cast<int64_t>(tokens_.size())),
      reported_(prompt_length_) {
  metrics.prompt_tokens = prompt_length_;
}

int32_t SequenceState::draft_budget(int32_t k, int64_t max_context) const {
  const int64_t remaining = params_.max_new_tokens - generated();
  const int64_t room = max_context - (base() + 1) - 1;
  return static_cast<int32_t>(std::max<int64_t>(0, std::min<int64_t>({k, remaining - 1, room})));
}

int32_t SequenceState::commit(const std::vector<int32_t>& new_tokens, const std::vector<int32_t>& eos_ids,
                              int64_t max_context) {
  int32_t n = 0;
  for (int32_t t : new_tokens) {
    if (finished()) break;
    tokens_.push_back(t);
    ++n;
    const auto& stops = params_.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), t) != stops.end() ||
        std::find(eos_ids.begin(), eos_ids.end(), t) != eos_ids.end()) {
      finish(FinishReason::kStop);
    } else if (generated() >= params_.max_new_tokens || static_cast<int64_t>(tokens_.size()) >= max_context) {
      finish(FinishReason::kLength);
    }
  }
  metrics.generated_tokens = generated();
  return n;
}

void SequenceState::finish(FinishReason reason, std::string error) {
  if (finished()) return;
  finish_ = reason;
  error_ = std::move(error);
}

std::vector<int32_t> SequenceState::take_new_tokens() {
  std::vector<int32_t> out(tokens_.begin() + reported_, tokens_.end());
  reported_ = static_cast<int64_t>(tokens_.size());
  return out;
}

std::vector<int32_t> SequenceState::take_unsent_to_draft(int64_t* from) {
  *from = sent_to_draft_;
  std::vector<int32_t> out(tokens_.begin() + sent_to_draft_, tokens_.end());
  sent_to_draft_ = static_cast<int64_t>(tokens_.size());
  return out;
}

}  // namespace saguaro
