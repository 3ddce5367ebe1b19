#include "saguaro/backup_policy.hpp"

#include <cmath>

namespace saguaro {

namespace {
constexpr double kEma = 0.1;  // weight of a new observation
// The first observation replaces the prior; later ones are averaged in.
void ema(double& v, bool& seen, double x) {
  v = seen ? v + kEma * (x - v) : x;
  seen = true;
}
}  // namespace

BackupPolicy::BackupPolicy(BackupKind kind, int64_t fixed_critical_batch, int32_t k)
    : kind_(kind), fixed_(fixed_critical_batch) {
  // Prior before anything is measured: per-token acceptance 0.7 for both neural speculations.
  const double a = 0.7;
  e_hit_ = e_jit_ = (1 - std::pow(a, k + 1)) / (1 - a);
}

int64_t BackupPolicy::critical_batch() const {
  if (fixed_ > 0) return fixed_;
  const double h = hit_;
  const double fast = (h * e_hit_ + (1 - h) * e_fast_) / verify_s_;
  for (int64_t b = 1; b <= kMaxBatch; ++b) {
    const double jit = (h * e_hit_ + (1 - h) * e_jit_) / (verify_s_ + (1 - std::pow(h, static_cast<double>(b))) * jit_s_);
    if (fast > jit) return b;  // ties (e.g. no misses at all) keep the neural backup
  }
  return kMaxBatch + 1;
}

BackupKind BackupPolicy::choose(int64_t batch_size) const {
  if (kind_ != BackupKind::kAuto) return kind_;
  return batch_size >= critical_batch() ? BackupKind::kFast : BackupKind::kJit;
}

void BackupPolicy::observe_lookup(bool hit) { ema(hit_, seen_[0], hit ? 1.0 : 0.0); }
void BackupPolicy::observe_verify(double s) { ema(verify_s_, seen_[1], s); }
void BackupPolicy::observe_jit(double s) { ema(jit_s_, seen_[2], s); }
void BackupPolicy::observe_committed(SpeculationSource source, int32_t committed) {
  switch (source) {
    case SpeculationSource::kCache: ema(e_hit_, seen_[3], committed); break;
    case SpeculationSource::kJitBackup: ema(e_jit_, seen_[4], committed); break;
    case SpeculationSource::kFastBackup: ema(e_fast_, seen_[5], committed); break;
    default: break;
  }
}

}  // namespace saguaro
