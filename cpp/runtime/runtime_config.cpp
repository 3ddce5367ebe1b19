#include "saguaro/runtime_config.hpp"

#include <stdexcept>

#include "saguaro/thread_affinity.hpp"

namespace saguaro {

Mode parse_mode(const std::string& s) {
  if (s == "ar") return Mode::kAr;
  if (s == "sd") return Mode::kSd;
  if (s == "ssd") return Mode::kSsd;
  throw std::invalid_argument("mode must be \"ar\", \"sd\" or \"ssd\", got \"" + s + "\"");
}
BackupKind parse_backup(const std::string& s) {
  if (s == "jit") return BackupKind::kJit;
  if (s == "fast") return BackupKind::kFast;
  if (s == "auto") return BackupKind::kAuto;
  throw std::invalid_argument("backup must be \"jit\", \"fast\" or \"auto\", got \"" + s + "\"");
}
CachePolicy parse_cache_policy(const std::string& s) {
  if (s == "wait") return CachePolicy::kWait;
  if (s == "partial") return CachePolicy::kPartial;
  if (s == "miss") return CachePolicy::kMiss;
  throw std::invalid_argument("cache_policy must be \"wait\", \"partial\" or \"miss\", got \"" + s + "\"");
}
FanoutKind parse_fanout_kind(const std::string& s) {
  if (s == "geometric") return FanoutKind::kGeometric;
  if (s == "uniform") return FanoutKind::kUniform;
  if (s == "manual") return FanoutKind::kManual;
  throw std::invalid_argument("fanout_kind must be \"geometric\", \"uniform\" or \"manual\", got \"" + s + "\"");
}
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kAr: return "ar";
    case Mode::kSd: return "sd";
    case Mode::kSsd: return "ssd";
  }
  return "";
}

void validate(const RuntimeConfig& c) {
  if (c.k < 1 || c.k > 64) throw std::invalid_argument("k must be in 1..64, got " + std::to_string(c.k));
  if (!(c.saguaro_c >= 0.f && c.saguaro_c <= 1.f))
    throw std::invalid_argument("saguaro_c must be in [0, 1], got " + std::to_string(c.saguaro_c));
  if (c.backup_critical_batch < 0)
    throw std::invalid_argument("backup_critical_batch must be >= 1 (or unset), got " + std::to_string(c.backup_critical_batch));
  check_cores(c.target_cores, "target_cores");
  check_cores(c.draft_cores, "draft_cores");
  if (c.mode == Mode::kSsd) {
    const auto& f = c.fanout;
    if (f.kind == FanoutKind::kManual) {
      if (static_cast<int32_t>(f.manual.size()) != c.k + 1)
        throw std::invalid_argument("fanout must list F_0..F_K (" + std::to_string(c.k + 1) + " values) for fanout_kind \"manual\", got " +
                                    std::to_string(f.manual.size()));
      if (!f.manual_after_miss.empty() && static_cast<int32_t>(f.manual_after_miss.size()) != c.k + 1)
        throw std::invalid_argument("fanout_after_miss must list F_0..F_K (" + std::to_string(c.k + 1) + " values), got " +
                                    std::to_string(f.manual_after_miss.size()));
      for (int32_t v : f.manual)
        if (v < 0) throw std::invalid_argument("fanout values must be >= 0");
      for (int32_t v : f.manual_after_miss)
        if (v < 0) throw std::invalid_argument("fanout_after_miss values must be >= 0");
    } else if (f.budget < 1) {
      throw std::invalid_argument("fanout_budget must be >= 1, got " + std::to_string(f.budget));
    }
  }
}

}  // namespace saguaro
