#pragma once
// The target side's state of one request: committed tokens, the pending token, limits, the
// speculation for the coming round, and what the draft has been told.
#include <chrono>
#include <cstdint>
#include <vector>

#include "saguaro/metrics.hpp"
#include "saguaro/request.hpp"
#include "saguaro/speculation.hpp"

namespace saguaro {

using Clock = std::chrono::steady_clock;

class SequenceState {
 public:
  SequenceState(int64_t id, std::vector<int32_t> prompt, RequestParams params, int32_t k, Clock::time_point submitted);

  int64_t id() const { return id_; }
  const RequestParams& params() const { return params_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }   // prompt + generated (committed)
  int64_t prompt_length() const { return prompt_length_; }
  int64_t generated() const { return static_cast<int64_t>(tokens_.size()) - prompt_length_; }
  // Absolute position of the pending token r (the last committed token, not yet run by the target).
  int64_t base() const { return static_cast<int64_t>(tokens_.size()) - 1; }
  bool sampled() const { return params_.temperature > 0.f; }

  // How many drafts the coming round may verify: never past max_new_tokens (a round commits
  // drafts + 1 tokens) nor past the context (the target's KV will hold base + 1 + n positions).
  int32_t draft_budget(int32_t k, int64_t max_context) const;

  // Appends tokens until a stop token or the length limit; returns how many were committed.
  int32_t commit(const std::vector<int32_t>& new_tokens, const std::vector<int32_t>& eos_ids, int64_t max_context);

  bool finished() const { return finish_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_; }
  const std::string& error() const { return error_; }
  void finish(FinishReason reason, std::string error = {});

  // Tokens committed since the last call (for the update board).
  std::vector<int32_t> take_new_tokens();
  // Committed tokens the draft has not been sent yet: [from, end). Marks them sent.
  std::vector<int32_t> take_unsent_to_draft(int64_t* from);
  // How many committed tokens the draft has not been sent.
  int64_t unsent_to_draft() const { return static_cast<int64_t>(tokens_.size()) - sent_to_draft_; }
  // A new draft knows nothing: the next take_unsent_to_draft() sends every committed token.
  void resend_all_to_draft() { sent_to_draft_ = 0; }

  Speculation speculation;                 // for the coming round
  std::vector<int32_t> tree_fanout;        // F_0..F_n sent to the draft for the round in flight
  int32_t outcome_accepted = -1;           // the last verification's outcome (k, t)
  int32_t outcome_bonus = -1;
  RequestMetrics metrics;
  Clock::time_point submitted;
  bool first_token_reported = false;

 private:
  int64_t id_;
  RequestParams params_;
  std::vector<int32_t> tokens_;
  int64_t prompt_length_;
  int64_t reported_ = 0;                   // tokens_ index up to which updates were emitted
  int64_t sent_to_draft_ = 0;
  FinishReason finish_ = FinishReason::kNone;
  std::string error_;
};

}  // namespace saguaro
