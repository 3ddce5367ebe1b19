// The draft's catch-up in the background (target_worker.hpp): rows far behind are sent as a prefill
// message, which the draft runs to their last committed token but the pending one, while the target's
// rounds run plain. A lone request whose draft could not catch up before it ends is not sent at all:
// its rounds run plain on the draft's idle threads too, as fast as AR.
#include <chrono>

#include "saguaro/target_worker.hpp"

namespace saguaro {

bool TargetWorker::draft_catching_up() {
  if (catching_up_ && draft_idle_()) {
    catching_up_ = false;
    // Measured at a round's start, so up to a round late: the rate errs low, towards not catching up.
    const double s = std::chrono::duration<double>(Clock::now() - catch_up_sent_).count();
    if (catch_up_tokens_ >= kBackgroundCatchUp && s > 0) draft_read_per_s_ = static_cast<double>(catch_up_tokens_) / s;
  }
  return catching_up_;
}

bool TargetWorker::catch_up_pays(const SequenceState& s, int64_t behind) const {
  // The draft's reading rate: its last catch-up's, else the target's own prefill rate (on lent
  // threads: the draft reads several times fewer weights per token, on fewer threads; on the
  // default pair it read about 1.8x faster), so the estimate errs towards not catching up.
  const double rate = draft_read_per_s_ > 0 ? draft_read_per_s_ : prompt_read_per_s_;
  if (!(rate > 0) || !(lone_plain_round_s_ > 0)) return false;  // a plain round first, to measure it
  const double plain_tokens_meanwhile = static_cast<double>(behind) / rate / lone_plain_round_s_;
  return plain_tokens_meanwhile < static_cast<double>(s.params().max_new_tokens - s.generated());
}

TargetWorker::CatchUp TargetWorker::start_catch_up(const Rows& rows) {
  if (mode_ != Mode::kSsd || transport_ == nullptr || draft_failed_ || !draft_idle_) return CatchUp::kNotNeeded;
  ToDraft msg;
  msg.kind = ToDraft::Kind::kPrefill;
  int64_t behind = 0;
  Rows far;
  for (auto* s : rows)
    if (s->unsent_to_draft() > kBackgroundCatchUp) {
      far.push_back(s);
      behind += s->unsent_to_draft();
    }
  if (far.empty()) return CatchUp::kNotNeeded;
  // A lone request only: in a batch a row left behind would be caught up inside the next speculation.
  if (governor_.enabled() && rows.size() == 1 && !catch_up_pays(*rows[0], behind)) return CatchUp::kUnpaid;
  for (auto* s : far) msg.rows.push_back(sync_row(*s));
  metrics_.draft_catch_up_rows += static_cast<int64_t>(msg.rows.size());
  send_to_draft(std::move(msg));
  catching_up_ = true;
  catch_up_sent_ = Clock::now();
  catch_up_tokens_ = behind;
  return CatchUp::kStarted;
}

}  // namespace saguaro
