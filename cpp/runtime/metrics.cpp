#include "saguaro/metrics.hpp"

#include <algorithm>

namespace saguaro {

RequestMetrics::RequestMetrics(int32_t k)
    : accepted_histogram(k + 1, 0),
      proposed_per_position(k, 0),
      accepted_per_position(k, 0),
      lookups_per_position(k + 1, 0),
      hits_per_position(k + 1, 0) {}

void RequestMetrics::record_verification(int32_t num_draft, int32_t accepted) {
  ++rounds;
  if (accepted < static_cast<int32_t>(accepted_histogram.size())) ++accepted_histogram[accepted];
  for (int32_t i = 0; i < num_draft && i < static_cast<int32_t>(proposed_per_position.size()); ++i) {
    ++proposed_per_position[i];
    if (i < accepted) ++accepted_per_position[i];
  }
}

void RequestMetrics::record_lookup(int32_t accepted, bool hit) {
  if (accepted < 0 || accepted >= static_cast<int32_t>(lookups_per_position.size())) return;
  ++lookups_per_position[accepted];
  if (hit) ++hits_per_position[accepted];
}

namespace {
void add(std::vector<int64_t>& into, const std::vector<int64_t>& from) {
  if (into.size() < from.size()) into.resize(from.size(), 0);
  for (size_t i = 0; i < from.size(); ++i) into[i] += from[i];
}
}  // namespace

void RequestMetrics::merge(const RequestMetrics& o) {
  prompt_tokens += o.prompt_tokens;
  generated_tokens += o.generated_tokens;
  rounds += o.rounds;
  add(accepted_histogram, o.accepted_histogram);
  add(proposed_per_position, o.proposed_per_position);
  add(accepted_per_position, o.accepted_per_position);
  add(lookups_per_position, o.lookups_per_position);
  add(hits_per_position, o.hits_per_position);
  backups_jit += o.backups_jit;
  backups_fast += o.backups_fast;
  speculations_from_cache += o.speculations_from_cache;
  prefill_s += o.prefill_s;
  time_to_first_token_s += o.time_to_first_token_s;
  total_s += o.total_s;
}

double RuntimeMetrics::hidden_fraction() const {
  const double total = draft_tree_s + draft_chain_s;
  return total > 0 ? draft_tree_hidden_s / total : 0.0;
}

}  // namespace saguaro
