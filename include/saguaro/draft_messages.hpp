#pragma once
// The messages the target and draft workers exchange over the Transport. Plain values (token ids,
// positions, float rows) so that a transport between processes/GPUs can serialise them; the cache
// handles are the in-process shortcut for "where to publish" (a cross-process transport would
// name a shared cache instead).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "saguaro/logits_processing.hpp"
#include "saguaro/speculation_cache.hpp"
#include "saguaro/verify.hpp"  // RowKey

namespace saguaro {

// One sequence in a request to the draft.
struct DraftRow {
  int64_t seq = 0;
  int64_t committed_from = 0;           // the committed tokens [from, from + size) the draft has not seen
  std::vector<int32_t> committed;       // ... ending with the pending token r
  ProcessParams params;                 // the request's temperature / top-k / top-p (Saguaro filled in per position)
  RowKey key;
  bool store_q = false;                 // sampled row: keep the q rows
  // kChain: how many tokens to draft. kSpeculate: how many drafts x1..xn S_T has.
  int32_t n = 0;
  std::vector<int32_t> drafts;          // kSpeculate: x1..xn of S_T
  std::vector<int32_t> fork_fanout;     // kSpeculate: F_0..F_n, candidates per outcome position
  int32_t depth = 0;                    // kSpeculate: branch length (tokens per cache entry)
  // Saguaro top-n at speculation position i is sample_fanout[i] + 1 (the fan-out the next tree uses there).
  std::vector<int32_t> sample_fanout;
};

struct ToDraft {
  // kPrefill: new sequences' prompts (rows carry only the committed prompt), sent when the target
  // admits them so that the draft's prefill runs while the target's does; no reply.
  // kQRequest (wire only, answered by the draft's end of the wire, never seen by the draft worker):
  // send the q rows of entry q_key of generation `round` (remote_q.hpp).
  enum class Kind { kChain, kSpeculate, kPrefill, kRelease, kStop, kQRequest };
  Kind kind = Kind::kChain;
  uint64_t round = 0;                   // kSpeculate: the round being verified (entries are for round + 1)
  std::vector<DraftRow> rows;
  std::vector<int64_t> released;        // kRelease
  CacheKey q_key{};                     // kQRequest
  float saguaro_c = 1.f;
  bool test_plant_unadjusted_q = false;  // RuntimeConfig::test_plant_unadjusted_q
  // Where a kSpeculate's entries go. Both null (a draft behind a wire, in another process): the
  // entries ride in the kTreeDone reply instead (ToTarget::entries).
  std::shared_ptr<SpeculationCache> cache;    // greedy rows (no q)
  std::shared_ptr<SpeculationCache> q_cache;  // sampled rows (with q)
};

struct ChainResult {
  int64_t seq = 0;
  std::vector<int32_t> tokens;
  std::vector<float> q;                 // tokens.size() * vocab when store_q
};

// One speculation-cache entry travelling with its tree's kTreeDone, when the draft has no shared
// cache to publish into (a draft in another process: the target's end of the wire publishes it).
struct CacheEntry {
  CacheKey key{};
  bool store_q = false;                 // goes to the sampled rows' cache
  std::vector<int32_t> tokens;
  std::vector<float> q;                 // tokens.size() * vocab when store_q and not q_held
  bool q_held = false;                  // store_q, but the q rows stay with the draft until asked for
};

struct ToTarget {
  // kQRows (wire only): the answer to a kQRequest, entries[0] with its q rows (empty: not there).
  enum class Kind { kChainResult, kTreeDone, kError, kQRows };
  Kind kind = Kind::kChainResult;
  uint64_t round = 0;
  std::vector<ChainResult> results;     // kChainResult, in request order
  std::chrono::steady_clock::time_point started, ended;
  int64_t published = 0;
  int64_t publish_failures = 0;
  bool abandoned = false;               // kTreeDone: stopped early because newer work arrived
  std::vector<CacheEntry> entries;      // kTreeDone of a draft without shared caches (ToDraft::cache null)
  std::string error;                    // kError
};

}  // namespace saguaro
