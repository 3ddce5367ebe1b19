#include "row_primitives.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace saguaro::detail {

namespace {
constexpr int64_t kInsertionLimit = 64;  // above this, nth_element beats the insertion buffer

std::string where(int64_t row, int64_t position) {
  std::ostringstream s;
  s << "row " << row;
  if (position >= 0) s << " position " << position;
  return s.str();
}
}  // namespace

void check_row(const RowScan& scan, const char* what, int64_t row, int64_t position) {
  if (scan.nan) throw std::invalid_argument(std::string(what) + ": logits of " + where(row, position) + " contain NaN");
  if (scan.pos_inf)
    throw std::invalid_argument(std::string(what) + ": logits of " + where(row, position) +
                                " contain +inf (give finite logits; -inf marks a forbidden token)");
  if (scan.finite == 0)
    throw std::invalid_argument(std::string(what) + ": logits of " + where(row, position) +
                                " have no finite value (every token is -inf)");
}

RowScratch& thread_scratch() {
  thread_local RowScratch scratch;
  return scratch;
}

int64_t select_top(const float* logits, int64_t vocab, int64_t count, int32_t exclude, int32_t* out,
                   RowScratch& scratch) {
  if (count <= 0) return 0;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (count <= kInsertionLimit) {
    // One pass; ids arrive ascending, so a tie never displaces an earlier (lower) id.
    scratch.best_value.resize(static_cast<size_t>(count));
    scratch.best_id.resize(static_cast<size_t>(count));
    float* bv = scratch.best_value.data();
    int32_t* bi = scratch.best_id.data();
    int64_t n = 0;
    const CpuIsa isa = cpu_isa_selected();
    for (int64_t i = 0; i < vocab; ++i) {
      // a full buffer takes only values above its last one: jump to the next (vectorised)
      if (n == count && (i = first_above(logits, i, vocab, bv[n - 1], isa)) == vocab) break;
      const float v = logits[i];
      if (v == neg_inf || i == exclude) continue;
      int64_t slot = (n == count) ? n - 1 : n;
      while (slot > 0 && v > bv[slot - 1]) {
        bv[slot] = bv[slot - 1];
        bi[slot] = bi[slot - 1];
        --slot;
      }
      bv[slot] = v;
      bi[slot] = static_cast<int32_t>(i);
      if (n < count) ++n;
    }
    std::copy(bi, bi + n, out);
    return n;
  }
  scratch.ids.clear();
  scratch.ids.reserve(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] != neg_inf && i != exclude) scratch.ids.push_back(static_cast<int32_t>(i));
  auto better = [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  const int64_t n = std::min<int64_t>(count, static_cast<int64_t>(scratch.ids.size()));
  auto first = scratch.ids.begin();
  if (n < static_cast<int64_t>(scratch.ids.size())) std::nth_element(first, first + n, scratch.ids.end(), better);
  std::sort(first, first + n, better);
  std::copy(first, first + n, out);
  return n;
}

namespace {

// Membership of token i in the top set that ends with boundary token b (logit desc, id asc).
inline bool at_or_before(const float* logits, int64_t i, int32_t b) {
  return logits[i] > logits[b] || (logits[i] == logits[b] && i <= b);
}

// The last token of the top-`count` set by logit, or -1 when the set holds every finite token.
int32_t top_boundary(const float* logits, int64_t vocab, int64_t count, int64_t finite, RowScratch& scratch) {
  if (count <= 0 || count >= finite) return -1;
  int32_t boundary = -1;
  if (count <= kInsertionLimit) {
    int32_t ids[kInsertionLimit];
    const int64_t n = select_top(logits, vocab, count, -1, ids, scratch);
    boundary = ids[n - 1];
  } else {
    scratch.ids.clear();
    for (int64_t i = 0; i < vocab; ++i)
      if (std::isfinite(logits[i])) scratch.ids.push_back(static_cast<int32_t>(i));
    auto better = [logits](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    std::nth_element(scratch.ids.begin(), scratch.ids.begin() + (count - 1), scratch.ids.end(), better);
    boundary = scratch.ids[static_cast<size_t>(count - 1)];
  }
  return boundary;
}

// A power of two below which the positive weights hold less than half of (1 - top_p) of the mass:
// the nucleus (the largest weights until their mass reaches top_p) lies at or above it. The weights are
// binned by their binary exponent, and the bins summed from the smallest up.
double nucleus_floor(const double* w, int64_t vocab, double total, double top_p) {
  double mass[2048] = {};
  for (int64_t i = 0; i < vocab; ++i) {
    uint64_t bits;
    std::memcpy(&bits, &w[i], 8);
    mass[(bits >> 52) & 0x7ff] += w[i];  // a weight is >= 0: no sign bit
  }
  const double droppable = 0.5 * (1.0 - top_p) * total;
  double below = 0.0;
  for (int e = 1; e < 2047; ++e) {  // bin 0 (zeros and subnormals) is always below the floor
    below += mass[e - 1];
    if (below + mass[e] >= droppable) return std::ldexp(1.0, e - 1023);
  }
  return 0.0;
}

// The last token of the nucleus among the weights >= floor (> 0 when floor is 0), or -1 when their
// mass stays below top_p.
int32_t nucleus_cut(const double* w, int64_t vocab, double floor, double total, double top_p,
                    std::vector<RowScratch::Weighted>& pairs) {
  pairs.clear();
  for (int64_t i = 0; i < vocab; ++i)
    if (w[i] > 0.0 && w[i] >= floor) pairs.push_back({w[i], static_cast<int32_t>(i)});
  auto before = [](const RowScratch::Weighted& a, const RowScratch::Weighted& b) {
    return a.weight > b.weight || (a.weight == b.weight && a.id < b.id);
  };
  const int64_t n = static_cast<int64_t>(pairs.size());
  int64_t start = 0, chunk = 256;
  double cumsum = 0.0;
  while (start < n) {
    const int64_t end = std::min(n, start + chunk);
    if (end < n) std::nth_element(pairs.begin() + start, pairs.begin() + end, pairs.end(), before);
    std::sort(pairs.begin() + start, pairs.begin() + end, before);
    for (int64_t r = start; r < end; ++r) {
      cumsum += pairs[r].weight / total;
      if (cumsum >= top_p) return pairs[r].id;
    }
    start = end;
    chunk *= 4;
  }
  return -1;
}

// Zeroes the weights outside the smallest (probability desc, id asc) prefix whose mass >= top_p.
// Fast path: the nucleus of a peaked row lies in the 64 largest logits (one pass with the insertion
// buffer). When it does not (flat rows), partial selection in growing chunks over the weights above
// the nucleus floor, and over all positive ones where those fall short after rounding.
// Both paths accumulate the same cumsum in the same order, so they give identical results.
// Returns true when the nucleus was found in the fast path: it is then scratch.kept (ids ascending)
// and the weights outside it are left as they are (the row is sparse); otherwise they are zeroed.
bool apply_top_p(const float* logits, double* w, int64_t vocab, double top_p, double total, RowScratch& scratch) {
  auto better = [w](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };
  int32_t cut = -1;
  {
    int32_t top[kInsertionLimit];
    const int64_t n = select_top(logits, vocab, kInsertionLimit, -1, top, scratch);
    // Tokens outside `top` have logits <= the last one's, hence weights <= w_floor.
    const double w_floor = (n == kInsertionLimit) ? w[top[n - 1]] : -1.0;
    std::sort(top, top + n, better);
    double cumsum = 0.0;
    for (int64_t r = 0; r < n && w[top[r]] > 0.0; ++r) {
      cumsum += w[top[r]] / total;
      if (cumsum >= top_p) {
        if (w[top[r]] > w_floor) {
          scratch.kept.assign(top, top + r + 1);
          std::sort(scratch.kept.begin(), scratch.kept.end());
          return true;
        }
        break;
      }
    }
  }
  if (cut < 0) {
    // Flat rows: (weight, id) pairs in contiguous memory, partially sorted in growing chunks. Only the
    // weights at or above nucleus_floor are paired first: the sorted pairs are then a prefix of the
    // full order, with the same sums. Where that prefix's mass falls short of top_p after rounding,
    // every positive weight is paired after all.
    const double floor = nucleus_floor(w, vocab, total, top_p);
    cut = nucleus_cut(w, vocab, floor, total, top_p, scratch.weighted);
    if (cut < 0 && floor > 0.0) cut = nucleus_cut(w, vocab, 0.0, total, top_p, scratch.weighted);
  }
  if (cut < 0) return false;  // rounding kept the mass below top_p: keep every token
  const double wc = w[cut];
  for (int64_t i = 0; i < vocab; ++i)
    if (w[i] > 0.0 && !(w[i] > wc || (w[i] == wc && i <= cut))) w[i] = 0.0;
  return false;
}

}  // namespace

RowWeights row_weights(const float* logits, int64_t vocab, const ProcessParams& params, bool saguaro,
                       RowScratch& scratch, const char* what, int64_t row, int64_t position) {
  const CpuIsa isa = cpu_isa_selected();
  const RowScan scan = scan_row(logits, vocab, isa);
  check_row(scan, what, row, position);
  RowWeights rw;
  rw.argmax = scan.argmax;
  if (params.temperature == 0.f) {
    rw.greedy = true;
    return rw;
  }
  scratch.weight.resize(static_cast<size_t>(vocab));
  double* w = scratch.weight.data();
  // the total when nothing below changes a weight
  double sum = temperature_weights(logits, vocab, static_cast<double>(scan.max), static_cast<double>(params.temperature),
                                   w, isa);
  bool changed = false;
  if (params.top_k > 0) {
    const int32_t b = top_boundary(logits, vocab, params.top_k, scan.finite, scratch);
    if (b >= 0) {
      changed = true;
      for (int64_t i = 0; i < vocab; ++i)
        if (!at_or_before(logits, i, b)) w[i] = 0.0;
    }
  }
  if (params.top_p < 1.f) {
    const double total = changed ? lane_sum(w, vocab, isa) : sum;  // top-k zeroed some weights
    changed = true;
    rw.sparse = apply_top_p(logits, w, vocab, static_cast<double>(params.top_p), total, scratch);
  }
  // A sparse row sums its nucleus in id order, a dense one in lane_sum's lanes (its zeros change nothing).
  const auto& kept = scratch.kept;
  if (saguaro && params.saguaro_c < 1.f && params.saguaro_topn > 0) {
    const int32_t b = top_boundary(logits, vocab, params.saguaro_topn, scan.finite, scratch);
    const double c = static_cast<double>(params.saguaro_c);
    auto in_top = [&](int64_t i) { return b < 0 || at_or_before(logits, i, b); };
    double scaled = 0.0;
    if (rw.sparse) {
      for (int32_t i : kept) scaled += in_top(i) ? w[i] * c : w[i];
    } else {
      for (int64_t i = 0; i < vocab; ++i) scaled += in_top(i) ? w[i] * c : w[i];
    }
    if (scaled > 0.0) {  // C = 0 with all mass in the top-n: leave the row unscaled
      changed = true;
      if (rw.sparse) {
        for (int32_t i : kept)
          if (in_top(i)) w[i] *= c;
      } else {
        for (int64_t i = 0; i < vocab; ++i)
          if (in_top(i)) w[i] *= c;
      }
    }
  }
  if (changed) {
    sum = 0.0;
    if (rw.sparse) {
      for (int32_t i : kept) sum += w[i];
    } else {
      sum = lane_sum(w, vocab, isa);
    }
  }
  rw.total = sum;
  return rw;
}

void write_probs(const RowWeights& rw, const RowScratch& scratch, int64_t vocab, float* probs_out) {
  if (rw.greedy) {
    std::fill(probs_out, probs_out + vocab, 0.f);
    probs_out[rw.argmax] = 1.f;
    return;
  }
  const double* w = scratch.weight.data();
  if (rw.sparse) {
    std::fill(probs_out, probs_out + vocab, 0.f);
    for (int32_t i : scratch.kept) probs_out[i] = static_cast<float>(w[i] / rw.total);
    return;
  }
  normalise(w, vocab, rw.total, probs_out, cpu_isa_selected());
}

float prob_of(const RowWeights& rw, const RowScratch& scratch, int32_t token) {
  if (rw.greedy) return token == rw.argmax ? 1.f : 0.f;
  if (rw.sparse && !std::binary_search(scratch.kept.begin(), scratch.kept.end(), token)) return 0.f;
  return static_cast<float>(scratch.weight[static_cast<size_t>(token)] / rw.total);
}

int32_t sample_written(const RowWeights& rw, const RowScratch& scratch, const float* probs, int64_t vocab, double u) {
  if (rw.greedy) return rw.argmax;  // a one-hot row: every u lands on it
  if (!rw.sparse) return sample_by(vocab, u, [probs](int64_t i) { return probs[i]; });
  const auto& kept = scratch.kept;
  double total = 0.0;
  for (int32_t i : kept) total += static_cast<double>(probs[i]);
  const double target = u * total;
  double cumsum = 0.0;
  int32_t last = -1;
  for (int32_t i : kept) {
    if (probs[i] > 0.f) {
      cumsum += static_cast<double>(probs[i]);
      last = i;
      if (cumsum > target) return i;
    }
  }
  return last;
}

RowWeights process_row(const float* logits, int64_t vocab, const ProcessParams& params, bool saguaro, float* probs_out,
                       RowScratch& scratch, const char* what, int64_t row, int64_t position) {
  const RowWeights rw = row_weights(logits, vocab, params, saguaro, scratch, what, row, position);
  write_probs(rw, scratch, vocab, probs_out);
  return rw;
}

}  // namespace saguaro::detail
