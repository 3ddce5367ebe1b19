// CUDA twin of fanout_candidates_cpu: the top-F_j candidates of each (row, position) by (logit desc,
// id asc), the drafted token excluded.
// Fan-outs up to kSplitFanoutMax (every real schedule): split rows (row_slices.cuh). Block (cell, slice)
// scans its slice and takes the slice's own top F_j in F_j block argmax rounds over registers; then one
// block per cell merges the slices' scans (errors) and takes the top F_j of their winners the same way,
// already in output order. Larger fan-outs: one block per cell selects by radix select, then sorts the
// winners.
#include <sstream>
#include <vector>

#include "row_slices.cuh"
#include "saguaro/fanout.hpp"

namespace saguaro {

namespace {

// Above this fan-out the split path's rounds (one block argmax per candidate) and its lists of
// slice winners (cells x slices x Fmax) cost more than one radix select per row.
constexpr int64_t kSplitFanoutMax = 64;

__global__ void fanout_radix_kernel(const float* draft_logits, const int32_t* drafted, const int32_t* fanout, int64_t K,
                              int64_t V, int64_t Fmax, int32_t* out_tokens, int32_t* errors) {
  using namespace cuda_detail;
  const int64_t cell = blockIdx.x;  // b * (K + 1) + j
  const int64_t b = cell / (K + 1), j = cell % (K + 1);
  const float* row = draft_logits + cell * V;
  int32_t* out = out_tokens + cell * Fmax;
  const RowScan scan = scan_row(row, V);
  if (scan.error != kOk) {
    if (threadIdx.x == 0) errors[cell] = scan.error;
    return;
  }
  const int32_t exclude = j < K ? drafted[b * K + j] : -1;
  if (exclude >= V) {
    if (threadIdx.x == 0) errors[cell] = kBadToken;
    return;
  }
  const int64_t F = fanout[cell];
  auto candidate = [&](int64_t i) { return i != exclude && isfinite(row[i]) != 0; };
  const long long available = scan.finite - ((exclude >= 0 && isfinite(row[exclude])) ? 1 : 0);
  Boundary top{0, -1, false};
  if (F > 0 && F < available) top = radix_boundary(row, V, candidate, [](int64_t) { return 1ull; }, static_cast<unsigned long long>(F));
  __shared__ int count;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  if (F > 0)
    for (int64_t i = threadIdx.x; i < V; i += kThreads)
      if (candidate(i) && within(top, order_key(row[i]), i)) out[atomicAdd(&count, 1)] = static_cast<int32_t>(i);
  __syncthreads();
  if (threadIdx.x == 0) {
    const int n = count;
    for (int a = 1; a < n; ++a) {  // insertion sort of the F winners (F is small)
      const int32_t id = out[a];
      const float v = row[id];
      int s = a;
      while (s > 0 && (row[out[s - 1]] < v || (row[out[s - 1]] == v && out[s - 1] > id))) {
        out[s] = out[s - 1];
        --s;
      }
      out[s] = id;
    }
    errors[cell] = kOk;
  }
  for (int64_t f = count + threadIdx.x; f < Fmax; f += kThreads) out[f] = -1;
}

// Split path, step 1. tops[blockIdx.x * Fmax + r], r < F_j: the slice's r-th candidate (id -1: none left).
__global__ void fanout_slices_kernel(const float* draft_logits, const int32_t* drafted, const int32_t* fanout, int64_t K,
                                     int64_t V, int64_t S, int64_t Fmax, cuda_detail::RowScan* parts,
                                     cuda_detail::ArgMax* tops) {
  using namespace cuda_detail;
  const int64_t cell = blockIdx.x / S, s = blockIdx.x % S;  // cell = b * (K + 1) + j
  const int64_t b = cell / (K + 1), j = cell % (K + 1);
  SliceValues mine;
  const RowScan scan = scan_slice(draft_logits + cell * V, V, s, mine);
  if (threadIdx.x == 0) parts[blockIdx.x] = scan;
  const int32_t exclude = j < K ? drafted[b * K + j] : -1;
  const int32_t F = fanout[cell];
  ArgMax* top = tops + blockIdx.x * Fmax;
  ArgMax taken{0.f, -1};
  int32_t r = 0;
  for (; r < F; ++r) {
    ArgMax best{0.f, -1};
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const ArgMax c{mine.v[u], mine.id[u]};
      if (c.id >= 0 && c.id != exclude && isfinite(c.value) && after(c, taken)) best = better_of(best, c);
    }
    best = block_argmax(best);  // block-uniform: the loop's exit is too
    if (threadIdx.x == 0) top[r] = best;
    if (best.id < 0) break;
    taken = best;
  }
  for (int32_t k = r + 1 + static_cast<int32_t>(threadIdx.x); k < F; k += kThreads) top[k] = ArgMax{0.f, -1};
}

// Split path, step 2: one block per cell.
__global__ void fanout_merge_kernel(const int32_t* drafted, const int32_t* fanout, int64_t K, int64_t V, int64_t S,
                                    int64_t Fmax, const cuda_detail::RowScan* parts, const cuda_detail::ArgMax* tops,
                                    int32_t* out_tokens, int32_t* errors) {
  using namespace cuda_detail;
  const int64_t cell = blockIdx.x;
  const int64_t b = cell / (K + 1), j = cell % (K + 1);
  __shared__ int32_t error;
  if (threadIdx.x < 32) {
    const RowScan scan = warp_merge_scans(parts + cell * S, S);
    if (threadIdx.x == 0) error = scan.error;
  }
  __syncthreads();
  if (error != kOk) {
    if (threadIdx.x == 0) errors[cell] = error;
    return;
  }
  const int32_t exclude = j < K ? drafted[b * K + j] : -1;
  if (exclude >= V) {
    if (threadIdx.x == 0) errors[cell] = kBadToken;
    return;
  }
  const int32_t F = fanout[cell];
  const ArgMax* cell_tops = tops + cell * S * Fmax;
  int32_t* out = out_tokens + cell * Fmax;
  ArgMax taken{0.f, -1};
  int32_t count = 0;
  for (; count < F; ++count) {
    ArgMax best{0.f, -1};
    for (int64_t e = threadIdx.x; e < S * F; e += kThreads) {
      const ArgMax c = cell_tops[(e / F) * Fmax + e % F];
      if (c.id >= 0 && after(c, taken)) best = better_of(best, c);
    }
    best = block_argmax(best);
    if (best.id < 0) break;
    if (threadIdx.x == 0) out[count] = best.id;
    taken = best;
  }
  for (int64_t f = count + threadIdx.x; f < Fmax; f += kThreads) out[f] = -1;
  if (threadIdx.x == 0) errors[cell] = kOk;
}

}  // namespace

void fanout_candidates_cuda(const float* draft_logits, const int32_t* drafted, const int32_t* fanout, int64_t B,
                            int64_t K, int64_t V, int64_t Fmax, int32_t* out_tokens, void* stream_ptr) {
  using namespace cuda_detail;
  if (B < 0 || K < 0 || V < 1 || Fmax < 0)
    throw std::invalid_argument("fanout_candidates: need B >= 0, K >= 0, V >= 1, Fmax >= 0");
  const int64_t cells = B * (K + 1);
  for (int64_t c = 0; c < cells; ++c) {
    if (fanout[c] < 0 || fanout[c] > Fmax) {
      std::ostringstream s;
      s << "fanout_candidates: fanout[" << c / (K + 1) << "][" << c % (K + 1) << "] = " << fanout[c]
        << " must be in [0, Fmax=" << Fmax << "]";
      throw std::invalid_argument(s.str());
    }
  }
  if (cells == 0 || Fmax == 0) return;
  if (cells > 2147483647) throw std::invalid_argument("fanout_candidates: too many rows for one launch");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  DeviceBuffer<int32_t> d_fanout(static_cast<size_t>(cells), stream);
  DeviceBuffer<int32_t> d_errors(static_cast<size_t>(cells), stream);
  d_fanout.upload(fanout, static_cast<size_t>(cells));
  const int64_t S = slice_count(V);
  if (Fmax <= kSplitFanoutMax && cells * S <= 2147483647) {
    DeviceBuffer<RowScan> d_parts(static_cast<size_t>(cells * S), stream);
    DeviceBuffer<ArgMax> d_tops(static_cast<size_t>(cells * S * Fmax), stream);
    fanout_slices_kernel<<<static_cast<unsigned>(cells * S), kThreads, 0, stream>>>(
        draft_logits, drafted, d_fanout.get(), K, V, S, Fmax, d_parts.get(), d_tops.get());
    check_cuda(cudaGetLastError(), "fanout_candidates slices launch");
    fanout_merge_kernel<<<static_cast<unsigned>(cells), kThreads, 0, stream>>>(
        drafted, d_fanout.get(), K, V, S, Fmax, d_parts.get(), d_tops.get(), out_tokens, d_errors.get());
  } else {
    fanout_radix_kernel<<<static_cast<unsigned>(cells), kThreads, 0, stream>>>(draft_logits, drafted, d_fanout.get(), K,
                                                                              V, Fmax, out_tokens, d_errors.get());
  }
  check_cuda(cudaGetLastError(), "fanout_candidates launch");
  std::vector<int32_t> errors(static_cast<size_t>(cells));
  check_cuda(cudaMemcpyAsync(errors.data(), d_errors.get(), errors.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
             "fanout_candidates errors");
  check_cuda(cudaStreamSynchronize(stream), "fanout_candidates");
  for (int64_t c = 0; c < cells; ++c)
    if (errors[c]) raise_row_error("fanout_candidates", c / (K + 1), errors[c], c % (K + 1));
}

}  // namespace saguaro
