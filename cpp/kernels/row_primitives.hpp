#pragma once
// Private building blocks of the CPU twins: row checks, partial selection, row processing, and the
// inverse-CDF sampler. Everything works on one row; scratch buffers are per thread and reused, so
// the kernels allocate nothing per call once warm and may run on any number of threads at once.
#include <cstdint>
#include <utility>
#include <vector>

#include "saguaro/cpu_features.hpp"
#include "saguaro/logits_processing.hpp"

namespace saguaro::detail {

struct RowScan {
  float max = 0.f;        // largest finite logit
  int32_t argmax = -1;    // lowest id holding it
  int64_t finite = 0;     // number of finite logits
  bool nan = false;
  bool pos_inf = false;
};

// The whole-row passes (row_passes.cpp), vectorised on `isa`; every path gives the scalar path's bits.
RowScan scan_row(const float* logits, int64_t vocab, CpuIsa isa = cpu_isa_selected());
// w[i] = exp((logits[i] - max) / t) in fp64 (0 for a -inf logit; exp_f64.hpp); returns lane_sum(w).
double temperature_weights(const float* logits, int64_t vocab, double max, double t, double* w, CpuIsa isa);
// The sum of w[0..n) in 8 lanes (lane i % 8 sums its values in id order), reduced in one fixed order.
double lane_sum(const double* w, int64_t n, CpuIsa isa);
// probs[i] = float(w[i] / total)
void normalise(const double* w, int64_t n, double total, float* probs, CpuIsa isa);
// The first i in [from, n) with x[i] > threshold (NaN never is), or n.
int64_t first_above(const float* x, int64_t from, int64_t n, float threshold, CpuIsa isa);

// Throws std::invalid_argument "<what>: <where> contains NaN / +inf / no finite logit".
void check_row(const RowScan& scan, const char* what, int64_t row, int64_t position);

struct RowScratch {
  std::vector<double> weight;           // unnormalised probabilities of the row being processed
  std::vector<int32_t> ids;             // index buffer for partial selection
  std::vector<float> best_value;        // small sorted buffer (top-k by insertion)
  std::vector<int32_t> best_id;
  std::vector<float> probs;             // a processed row (verification)
  struct Weighted {
    double weight;
    int32_t id;
  };
  std::vector<Weighted> weighted;       // top-p fallback: (weight, id) pairs sorted in place
  std::vector<int32_t> kept;            // sparse rows: the nucleus, ids ascending
};

RowScratch& thread_scratch();

// The best `count` tokens by (logit descending, id ascending), skipping -inf logits and `exclude`
// (< 0: none), written best first to `out`; returns how many were found (<= count).
// Small counts use one pass with a sorted insertion buffer, large ones nth_element + sort.
int64_t select_top(const float* logits, int64_t vocab, int64_t count, int32_t exclude, int32_t* out,
                   RowScratch& scratch);

// A processed row before normalisation: the final weights are in scratch.weight (until the next call
// on this thread), the probability of token i is float(weight[i] / total). Greedy rows are one-hot.
// A sparse row (a top-p nucleus found among the 64 largest logits) has non-zero weights only at
// scratch.kept; weights elsewhere are stale and never read.
struct RowWeights {
  bool greedy = false;
  bool sparse = false;
  int32_t argmax = -1;
  double total = 0.0;
};

// The processing of process_row without writing the row: verification needs p(x) of an accepted
// draft token only, and the full row only where a token is drawn.
RowWeights row_weights(const float* logits, int64_t vocab, const ProcessParams& params, bool saguaro,
                       RowScratch& scratch, const char* what, int64_t row, int64_t position);
void write_probs(const RowWeights& rw, const RowScratch& scratch, int64_t vocab, float* probs_out);
float prob_of(const RowWeights& rw, const RowScratch& scratch, int32_t token);
// Inverse-CDF sample of a row written by write_probs from rw (same result as sample_by over the
// whole row; a sparse row only visits its nucleus).
int32_t sample_written(const RowWeights& rw, const RowScratch& scratch, const float* probs, int64_t vocab, double u);

// Processes one row (docs/contracts.md §2) into probs_out. `saguaro` = apply the Saguaro fields.
// Checks the row (NaN, +inf, no finite logit) and throws naming what/row/position.
RowWeights process_row(const float* logits, int64_t vocab, const ProcessParams& params, bool saguaro, float* probs_out,
                       RowScratch& scratch, const char* what, int64_t row, int64_t position);

// Inverse CDF over ids ascending with weights get(i) (float, >= 0) accumulated in double: the first
// i with weight > 0 and cumsum > u * total; the last positive one if rounding leaves none; -1 if none.
template <class Get>
int32_t sample_by(int64_t vocab, double u, Get get) {
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) total += static_cast<double>(get(i));
  const double target = u * total;
  double cumsum = 0.0;
  int32_t last = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    const float w = get(i);
    if (w > 0.f) {
      cumsum += static_cast<double>(w);
      last = static_cast<int32_t>(i);
      if (cumsum > target) return last;
    }
  }
  return last;
}

}  // namespace saguaro::detail
