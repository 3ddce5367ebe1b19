#include "saguaro/runtime_config.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "saguaro/thread_affinity.hpp"

namespace saguaro {

Mode parse_mode(const std::string& s) {
  if (s == "ar") return Mode::kAr;
  if (s == "sd") return Mode::kSd;
  if (s == "ssd") return Mode::kSsd;
  throw std::invalid_argument("unknown mode \"" + s +
                              "\": use \"ssd\" (speculative speculative decoding), \"sd\" (speculative decoding) "
                              "or \"ar\" (target only)");
}
BackupKind parse_backup(const std::string& s) {
  if (s == "jit") return BackupKind::kJit;
  if (s == "fast") return BackupKind::kFast;
  if (s == "auto") return BackupKind::kAuto;
  throw std::invalid_argument("backup must be \"jit\" (the draft decodes on a miss), \"fast\" (n-gram proposal) or "
                              "\"auto\", got \"" + s + "\"");
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
const char* backup_name(BackupKind b) {
  switch (b) {
    case BackupKind::kJit: return "jit";
    case BackupKind::kFast: return "fast";
    case BackupKind::kAuto: return "auto";
  }
  return "";
}
const char* cache_policy_name(CachePolicy p) {
  switch (p) {
    case CachePolicy::kWait: return "wait";
    case CachePolicy::kPartial: return "partial";
    case CachePolicy::kMiss: return "miss";
  }
  return "";
}
const char* fanout_kind_name(FanoutKind k) {
  switch (k) {
    case FanoutKind::kGeometric: return "geometric";
    case FanoutKind::kUniform: return "uniform";
    case FanoutKind::kManual: return "manual";
  }
  return "";
}

namespace {

std::string list_text(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// F_0..F_K: k+1 values >= 0, at least one branch.
void check_manual_list(const std::vector<int32_t>& list, int32_t k, const char* name) {
  bool ok = static_cast<int64_t>(list.size()) == static_cast<int64_t>(k) + 1;
  int64_t total = 0;
  for (int32_t v : list) {
    ok = ok && v >= 0;
    total += v;
  }
  if (!ok || total < 1)
    throw std::invalid_argument(std::string(name) + " must be k+1 = " + std::to_string(k + 1) +
                                " integers >= 0 (branches at positions 0..k) with at least one > 0, got " +
                                list_text(list));
}

}  // namespace

void validate(const RuntimeConfig& c) {
  if (c.k < 1 || c.k > 64)
    throw std::invalid_argument("k (draft tokens per round) must be an integer in 1..64, got " + std::to_string(c.k));
  if (!(c.saguaro_c >= 0.0 && c.saguaro_c <= 1.0))
    throw std::invalid_argument("saguaro_c must be in [0, 1] (1 = plain speculative sampling), got " +
                                std::to_string(c.saguaro_c));
  if (c.backup_critical_batch < 0)
    throw std::invalid_argument("backup_critical_batch must be an integer >= 1 (or unset), got " +
                                std::to_string(c.backup_critical_batch));
  if (c.target_threads < 1)
    throw std::invalid_argument("target_threads must be an integer >= 1, got " + std::to_string(c.target_threads));
  if (c.draft_threads < 1)
    throw std::invalid_argument("draft_threads must be an integer >= 1, got " + std::to_string(c.draft_threads));
  check_cores(c.target_cores, "target_cores");
  check_cores(c.draft_cores, "draft_cores");
  const FanoutConfig& f = c.fanout;
  if (f.budget < 1)
    throw std::invalid_argument("fanout budget M must be an integer >= 1 (branches per sequence), got " +
                                std::to_string(f.budget));
  if (!(std::isfinite(f.r) && f.r > 0.0))
    throw std::invalid_argument("fanout_r (the miss-rate exponent) must be finite and > 0, got " + std::to_string(f.r));
  // The lists are used (and so checked) with the manual kind only; another kind ignores them.
  if (f.kind == FanoutKind::kManual) {
    if (f.manual.empty())
      throw std::invalid_argument("fanout_kind \"manual\" needs fanout = [F_0, ..., F_k] (k+1 integers >= 0)");
    check_manual_list(f.manual, c.k, "fanout");
    if (!f.manual_after_miss.empty()) check_manual_list(f.manual_after_miss, c.k, "fanout_after_miss");
  }
}

}  // namespace saguaro
