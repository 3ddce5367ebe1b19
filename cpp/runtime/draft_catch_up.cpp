// The draft's catch-up in the background (target_worker.hpp): rows far behind are sent as a prefill
// message, which the draft runs to their last committed token but the pending one, while the target's
// rounds run plain.
#include "saguaro/target_worker.hpp"

namespace saguaro {

bool TargetWorker::draft_catching_up() {
  if (catching_up_ && draft_idle_()) catching_up_ = false;
  return catching_up_;
}

bool TargetWorker::start_catch_up(const Rows& rows) {
  if (mode_ != Mode::kSsd || transport_ == nullptr || draft_failed_ || !draft_idle_) return false;
  ToDraft msg;
  msg.kind = ToDraft::Kind::kPrefill;
  for (auto* s : rows)
    if (s->unsent_to_draft() > kBackgroundCatchUp) msg.rows.push_back(sync_row(*s));
  if (msg.rows.empty()) return false;
  metrics_.draft_catch_up_rows += static_cast<int64_t>(msg.rows.size());
  send_to_draft(std::move(msg));
  catching_up_ = true;
  return true;
}

}  // namespace saguaro
