#include "saguaro/speculation_governor.hpp"

#include <algorithm>

namespace saguaro {

int64_t SpeculationGovernor::bucket_of(int64_t batch) {
  int64_t b = 2;
  while (b < batch) b *= 2;
  return b;
}

const SpeculationGovernor::Bucket* SpeculationGovernor::measured_below(int64_t bucket) const {
  for (auto it = buckets_.lower_bound(bucket); it != buckets_.begin();) {
    --it;
    const Bucket& b = it->second;
    // a verdict: plain rounds measured and speculation's warm-up over (or cut short by a slower round)
    if (b.plain.rounds >= kWarmRounds && speculation_judged(b)) return &b;
  }
  return nullptr;
}

bool SpeculationGovernor::plain_faster_below(int64_t bucket) const {
  // the largest smaller bucket with both arms measured; speculation must have won there by a margin,
  // because a larger batch only makes verification relatively dearer
  const Bucket* b = measured_below(bucket);
  return b != nullptr && b->speculating.rate() < kLargerBatchMargin * b->plain.rate();
}

bool SpeculationGovernor::follows_plain_below(int64_t bucket, int64_t batch) const {
  const Bucket* b = measured_below(bucket);
  return b != nullptr && b->speculating.rate() < b->plain.rate() && !cheap_verification(batch);
}

bool SpeculationGovernor::speculation_favoured_below(int64_t bucket) const {
  const Bucket* b = measured_below(bucket);
  return b != nullptr && b->speculating.rate() >= kLargerBatchMargin * b->plain.rate();
}

bool SpeculationGovernor::starts_plain(int64_t bucket) const {
  return plain_faster_below(bucket) || (bucket >= kColdPlainBucket && measured_below(bucket) == nullptr);
}

bool SpeculationGovernor::speculation_judged(const Bucket& k) {
  if (k.speculating.rounds >= kWarmRounds) return true;
  // a first speculating round slower than the measured plain rounds ends speculation's warm-up: its
  // further rounds would be the dearest of the bucket, and the probes measure it again later
  return k.speculating.rounds >= 1 && k.plain.rounds >= kWarmRounds && k.speculating.rate() < k.plain.rate();
}

bool SpeculationGovernor::speculate(int64_t batch) {
  if (!enabled_) return true;
  if (batch < 2) {
    if (last_bucket_ >= 2) {  // the batch just fell to one
      lone_dip_ = measured_backing_off(last_bucket_);
      lone_streak_ = 0;
    }
    last_bucket_ = 1;
    ++lone_streak_;
    return !(lone_dip_ && lone_streak_ <= kWarmRounds);
  }
  const int64_t bucket = bucket_of(batch);
  Bucket& k = buckets_[bucket];
  if (bucket != last_bucket_) {
    k.streak = 0;
    k.dip = last_bucket_ > bucket && measured_backing_off(last_bucket_);
  }
  ++k.streak;
  last_bucket_ = bucket;
  // A decision to speculate that waited for the draft's catch-up is taken now (postpone); at another
  // batch size it lapses, as a probe there would have.
  const bool postponed = postponed_ == bucket;
  postponed_ = 0;
  if (postponed) return true;
  // Where a smaller batch measured plain rounds faster, a larger one (more compute-bound still) starts
  // plain, and its speculation is first measured at a probe: warming speculation up first would spend
  // its most expensive rounds on the arm least likely to win. A large batch with nothing measured below
  // it (a cold burst of requests) starts plain too and waits as long for its first probe: on a
  // compute-bound target that round verifies K+1 tokens for every row and has the draft catch up on
  // every deferred prompt, the dearest round there is, so it must be rare to be cheap. Speculation is
  // found from below meanwhile: smaller batches measure it (cheaply), and a larger one where it won by
  // the margin speculates at once. A latency-bound target (cheap_verification) probes right away.
  if (k.speculating.rounds == 0 && starts_plain(bucket)) {
    if (k.plain.rounds < kWarmRounds || (k.dip && !lasted(k))) return false;
    if (follows_plain_below(bucket, batch)) return false;
    const bool cold = measured_below(bucket) == nullptr;
    if (!(cold && cheap_verification(batch)) && ++k.since_probe < kProbeEvery * 4) return false;
    k.since_probe = 0;
    k.since_probe_s = 0;
    return true;  // the rest of speculation's warm-up follows below once this round is observed
  }
  // Measure both arms first, the arm likelier to win last. Plain rounds first, unless a smaller batch
  // measured speculation faster by the margin: plain rounds are the cheap arm wherever speculation does
  // not pay (a compute-bound target, or SSD's target on fewer cores than a plain round borrows), and
  // measured, they let a first speculating round that is slower end speculation's warm-up
  // (speculation_judged): one dear round instead of kWarmRounds. Where speculation pays, that order
  // costs kWarmRounds plain rounds once, in the first bucket measured. In a dip (entered from a larger
  // size where plain measured faster) the first speculating round waits until the size has lasted:
  // under load the batch dips for a round or two while requests finish and others join, and a warm-up
  // there would spend a dear round on a size that is gone the next round (serving 4 clients, SSD warmed
  // batch 2 up in one such dip: a 0.32 s round for 4 tokens, against 0.07 s plain).
  if (speculation_favoured_below(bucket)) {
    if (!speculation_judged(k)) return true;
    if (k.plain.rounds < kWarmRounds) return false;
  } else {
    if (k.plain.rounds < kWarmRounds) return false;
    if (k.speculating.rounds == 0 && k.dip && !lasted(k)) return false;
    if (!speculation_judged(k)) return true;
  }
  const bool faster_is_speculating = k.speculating.rate() >= k.plain.rate();
  // A probe of speculation whose round was slower than the plain rounds ends there, as its warm-up
  // does: on a target where it does not pay a speculating round costs several plain ones (its first
  // after a plain stretch, which also catches the draft up, the most), and under steady load the
  // probes are the governor's whole cost against plain rounds alone.
  if (k.probing > 0 && !faster_is_speculating && k.speculating.last_rate < k.plain.rate()) k.probing = 0;
  if (k.probing > 0) {
    --k.probing;
    return !faster_is_speculating;
  }
  if (k.probe_open) {  // the last probe's rounds are observed: did the slower arm catch up?
    k.probe_open = false;
    k.backoff = faster_is_speculating == k.probed_from_speculating ? std::min(2 * k.backoff, kMaxProbeBackoff) : 1;
  }
  // The slower arm's rate may have changed: measure it again, the less often the further behind it is
  // (a probe of a much slower arm costs more, and a small change would not make it the faster), and
  // never before the last probe's measured cost fits kProbeBudget of the time since.
  // Plain faster here and measured faster at a smaller batch too: speculation is not probed here, where
  // its rounds are the dearest (follows_plain_below).
  if (!faster_is_speculating && follows_plain_below(bucket, batch)) return false;
  const double fast = std::max(k.speculating.rate(), k.plain.rate());
  const double slow = std::max(1e-12, std::min(k.speculating.rate(), k.plain.rate()));
  const int interval = static_cast<int>(kProbeEvery * std::clamp(fast / slow, 1.0, 4.0)) * k.backoff;
  if (++k.since_probe >= interval && probe_affordable(k)) {
    k.since_probe = 0;
    k.since_probe_s = 0;
    k.probing = kWarmRounds - 1;
    k.probe_open = true;
    k.probed_from_speculating = faster_is_speculating;
    return !faster_is_speculating;
  }
  return faster_is_speculating;
}

bool SpeculationGovernor::backing_off(int64_t batch) const {
  if (!enabled_) return false;
  if (batch < 2) {  // would the next batch-1 round be a dip's plain one?
    if (last_bucket_ >= 2) return measured_backing_off(last_bucket_);
    return lone_dip_ && lone_streak_ < kWarmRounds;
  }
  const int64_t bucket = bucket_of(batch);
  const auto it = buckets_.find(bucket);
  // unmeasured speculation: plain rounds come first unless a smaller batch measured it faster
  if (it == buckets_.end() || it->second.speculating.rounds == 0) return !speculation_favoured_below(bucket);
  return measured_backing_off(bucket);
}

bool SpeculationGovernor::measured_backing_off(int64_t bucket) const {
  const auto it = buckets_.find(bucket);
  if (it == buckets_.end() || it->second.speculating.rounds == 0) return plain_faster_below(bucket);
  const Bucket& k = it->second;
  return speculation_judged(k) && k.plain.rounds >= kWarmRounds && k.plain.rate() > k.speculating.rate();
}

SpeculationGovernor::Decision SpeculationGovernor::decide(int64_t batch) {
  Decision d{batch, speculate(batch), false};
  if (enabled_ && batch >= 2) {
    const Bucket& k = buckets_[bucket_of(batch)];
    const Arm& a = d.speculate ? k.speculating : k.plain;
    const Arm& other = d.speculate ? k.plain : k.speculating;
    d.measuring = other.rounds > 0 && other.rate() > 0 && (a.rounds == 0 || a.rate() < other.rate());
  }
  return d;
}

void SpeculationGovernor::observe(const Decision& decision, int64_t tokens, double seconds) {
  if (!decision.speculate) ++plain_rounds_;
  if (!enabled_ || decision.batch < 2 || !(seconds > 0)) return;
  Bucket& k = buckets_[bucket_of(decision.batch)];
  Arm& a = decision.speculate ? k.speculating : k.plain;
  // A measuring round (of the slower or unmeasured arm) costs the time beyond what the other arm would
  // have taken for its tokens; a run of them (a warm-up's or a probe's) is the probe cost to budget.
  const Arm& other = decision.speculate ? k.plain : k.speculating;
  if (decision.measuring) charge_probe(k, other, tokens, seconds);
  k.in_measuring_run = decision.measuring;
  k.since_probe_s += seconds;
  a.tokens = kDecay * a.tokens + static_cast<double>(tokens);
  a.seconds = kDecay * a.seconds + seconds;
  a.last_rate = static_cast<double>(tokens) / seconds;
  ++a.rounds;
}

bool SpeculationGovernor::charge_probe(Bucket& k, const Arm& other, int64_t tokens, double seconds) {
  if (!(other.rate() > 0)) return false;
  const double excess = std::max(0.0, seconds - static_cast<double>(tokens) / other.rate());
  k.probe_cost_s = k.in_measuring_run ? k.probe_cost_s + excess : excess;
  return true;
}

void SpeculationGovernor::postpone(const Decision& decision) {
  if (enabled_ && decision.speculate && decision.batch >= 2) postponed_ = bucket_of(decision.batch);
}

void SpeculationGovernor::observe_catch_up(int64_t tokens, double seconds) {
  if (postponed_ == 0 || !(seconds > 0)) return;
  Bucket& k = buckets_[postponed_];
  // the speculating rounds after it continue the same probe's cost
  if (charge_probe(k, k.plain, tokens, seconds)) k.in_measuring_run = true;
  k.since_probe_s += seconds;
}

void SpeculationGovernor::observe_forward(int64_t rows, double seconds) {
  if (!enabled_ || rows < 1 || !(seconds > 0)) return;
  forwards_[bucket_of(rows)] = {rows, seconds};
}

double SpeculationGovernor::predicted_cost_ratio(int64_t base, int64_t rows) const {
  // The line through two measured forwards (ascending by rows, as their buckets are): the largest at
  // or below `base` (else the smallest), and the smallest larger one that reaches `rows` (else the
  // largest), evaluated at `rows` over its value at `base`.
  const std::pair<int64_t, double>* lo = nullptr;
  for (const auto& entry : forwards_)
    if (lo == nullptr || entry.second.first <= base) lo = &entry.second;
  if (lo == nullptr) return 0.0;
  const std::pair<int64_t, double>* hi = nullptr;
  for (const auto& entry : forwards_) {
    if (entry.second.first <= lo->first) continue;
    hi = &entry.second;
    if (hi->first >= rows) break;
  }
  if (hi == nullptr) return 0.0;
  const double slope = (hi->second - lo->second) / static_cast<double>(hi->first - lo->first);
  const double at_base = lo->second + slope * static_cast<double>(base - lo->first);
  const double at_rows = lo->second + slope * static_cast<double>(rows - lo->first);
  return at_base > 0 ? at_rows / at_base : 0.0;
}

bool SpeculationGovernor::cheap_verification(int64_t batch) const {
  const double ratio = predicted_cost_ratio(batch, batch * (1 + static_cast<int64_t>(k_)));
  return ratio > 0 && ratio <= kCheapVerification;
}

double SpeculationGovernor::rate(int64_t batch, bool speculated) const {
  auto it = buckets_.find(bucket_of(batch));
  if (it == buckets_.end()) return 0.0;
  return speculated ? it->second.speculating.rate() : it->second.plain.rate();
}

}  // namespace saguaro
