#include "saguaro/ngram_proposer.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "saguaro/philox.hpp"

namespace saguaro {
namespace {

void validate(const std::vector<int32_t>& context, int32_t k, int64_t vocab, int32_t max_ngram, int32_t min_ngram) {
  if (k < 0) throw std::invalid_argument("ngram_propose: k must be >= 0, got " + std::to_string(k));
  if (vocab < 1) throw std::invalid_argument("ngram_propose: vocab must be >= 1, got " + std::to_string(vocab));
  if (min_ngram < 1) {
    throw std::invalid_argument("ngram_propose: min_ngram must be >= 1, got " + std::to_string(min_ngram));
  }
  if (max_ngram < min_ngram) {
    throw std::invalid_argument("ngram_propose: max_ngram (" + std::to_string(max_ngram) +
                                ") must be >= min_ngram (" + std::to_string(min_ngram) + ")");
  }
  for (size_t i = 0; i < context.size(); ++i) {
    if (context[i] < 0 || context[i] >= vocab) {
      throw std::invalid_argument("ngram_propose: context[" + std::to_string(i) + "] = " + std::to_string(context[i]) +
                                  " is not a token id in [0, " + std::to_string(vocab) + ")");
    }
  }
}

// Start of the continuation after the most recent earlier occurrence of the length-n suffix, or -1.
int64_t find_continuation(const std::vector<int32_t>& context, int64_t n) {
  const int64_t len = static_cast<int64_t>(context.size());
  const int32_t* suffix = context.data() + (len - n);
  for (int64_t i = len - n - 1; i >= 0; --i) {
    if (std::equal(suffix, suffix + n, context.data() + i)) return i + n;
  }
  return -1;
}

}  // namespace

NgramProposal ngram_propose_detailed(const std::vector<int32_t>& context, int32_t k, int64_t vocab, uint64_t seed,
                                     uint64_t stream, int32_t max_ngram, int32_t min_ngram) {
  validate(context, k, vocab, max_ngram, min_ngram);
  NgramProposal out;
  out.tokens.reserve(static_cast<size_t>(k));
  const int64_t len = static_cast<int64_t>(context.size());
  if (k == 0) return out;
  // An n-gram needs an earlier occurrence, so n <= len - 1.
  for (int64_t n = std::min<int64_t>(max_ngram, len - 1); n >= min_ngram; --n) {
    const int64_t start = find_continuation(context, n);
    if (start < 0) continue;
    for (int64_t t = 0; t < k; ++t) {
      const int64_t p = start + t;  // p < len + t: either context or an already proposed token
      out.tokens.push_back(p < len ? context[static_cast<size_t>(p)] : out.tokens[static_cast<size_t>(p - len)]);
    }
    out.matched_ngram = static_cast<int32_t>(n);
    return out;
  }
  for (int64_t t = 0; t < k; ++t) {
    const double u = keyed_uniform(seed, stream, len + t, kFastBackup);
    const int64_t token = std::min<int64_t>(vocab - 1, static_cast<int64_t>(u * static_cast<double>(vocab)));
    out.tokens.push_back(static_cast<int32_t>(token));
  }
  return out;
}

std::vector<int32_t> ngram_propose(const std::vector<int32_t>& context, int32_t k, int64_t vocab, uint64_t seed,
                                   uint64_t stream, int32_t max_ngram, int32_t min_ngram) {
  return ngram_propose_detailed(context, k, vocab, seed, stream, max_ngram, min_ngram).tokens;
}

}  // namespace saguaro
