#pragma once
// Fast backup speculator (docs/algorithm.md §3, ours): prompt lookup. Near-zero latency, deterministic
// proposals (q = one-hot, verified with the deterministic rule, so exactness is kept).

#include <cstdint>
#include <vector>

namespace saguaro {

struct NgramProposal {
  std::vector<int32_t> tokens;  // k proposed tokens
  int32_t matched_ngram = 0;    // length of the suffix n-gram that matched; 0: all tokens are random
};

// context = the whole committed sequence (prompt included), so context.size() is the absolute position
// of the first proposed token. Finds the most recent earlier occurrence of the longest suffix n-gram
// (max_ngram down to min_ngram) of context and proposes the k tokens after it. When the occurrence is
// close to the end, copying reads on into the tokens already proposed, so a repeating pattern continues
// (the n-gram occurrence overlaps its own continuation); every position can then be filled. Without any
// match, every position is a uniformly random token drawn with keyed_uniform(seed, stream, position,
// kFastBackup), position = absolute position of the proposed token.
// std::invalid_argument: k < 0, vocab < 1, min_ngram < 1, max_ngram < min_ngram, or a context token
// outside [0, vocab).
std::vector<int32_t> ngram_propose(const std::vector<int32_t>& context, int32_t k, int64_t vocab, uint64_t seed,
                                   uint64_t stream, int32_t max_ngram = 3, int32_t min_ngram = 1);

// Added to the contract: the same proposal plus which n-gram matched (for metrics).
NgramProposal ngram_propose_detailed(const std::vector<int32_t>& context, int32_t k, int64_t vocab, uint64_t seed,
                                     uint64_t stream, int32_t max_ngram = 3, int32_t min_ngram = 1);

}  // namespace saguaro
