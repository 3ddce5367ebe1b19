#pragma once
// Split rows: a logits row is cut into slices of kSlice tokens and each (row, slice) gets its own
// thread block, so that the few rows of a batch-1 round still spread over every SM. One block walking
// a 151,936-token row alone reads at one SM's share of the bandwidth (~37 µs per row on an H100,
// bench/results/kernels-h100.md); 38 slices per row read it at the GPU's. A second, small kernel merges
// the slices' partial results per row.
//
// Every merge here is exact: argmax and selections in the total order (logit desc, id asc), integer
// counts, error flags. So results do not depend on the slicing and agree bit for bit with the one-block
// kernels and with the CPU twins.
#include "row_primitives.cuh"

namespace saguaro::cuda_detail {

constexpr int64_t kSlice = int64_t{kUnroll} * kThreads;  // each thread loads kUnroll tokens of a slice at once

inline int64_t slice_count(int64_t V) { return (V + kSlice - 1) / kSlice; }

// One thread's tokens of a slice: id[u] = -1 past the row's end.
struct SliceValues {
  float v[kUnroll];
  int32_t id[kUnroll];
};

// Loads slice s of a row (the same tokens scan_row's s-th step reads, so loads stay coalesced) into the
// thread's registers and scans it; every thread gets the slice's scan. A slice without a finite value
// says kNoFinite, which is an error only for the whole row (merge_scans).
static __device__ RowScan scan_slice(const float* row, int64_t V, int64_t s, SliceValues& mine) {
  const int64_t begin = s * kSlice + threadIdx.x;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t i = begin + u * kThreads;
    mine.id[u] = i < V ? static_cast<int32_t>(i) : -1;
    mine.v[u] = i < V ? row[i] : 0.f;
  }
  ArgMax best{0.f, -1};
  long long finite = 0;
  int nan = 0, pos_inf = 0;
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    if (mine.id[u] < 0) continue;
    const float v = mine.v[u];
    if (isfinite(v)) {
      ++finite;
      best = better_of(best, ArgMax{v, mine.id[u]});
    } else if (isnan(v)) {
      nan = 1;
    } else if (v > 0.f) {
      pos_inf = 1;
    }
  }
  return block_scan(best, finite, nan, pos_inf);
}

// For a launch of one block per (row, slice), rows of V logits in order and S slices each: this block's
// slice scanned into parts[blockIdx.x].
static __device__ void scan_block_slice(const float* logits, int64_t V, int64_t S, RowScan* parts) {
  SliceValues mine;
  const RowScan scan = scan_slice(logits + (blockIdx.x / S) * V, V, blockIdx.x % S, mine);
  if (threadIdx.x == 0) parts[blockIdx.x] = scan;
}

// The scan of two disjoint parts of a row. Associative and commutative; {0, -1, 0, kNoFinite} is its
// identity.
__device__ __forceinline__ RowScan merge_scans(const RowScan& a, const RowScan& b) {
  const ArgMax m = better_of(ArgMax{a.max, a.argmax}, ArgMax{b.max, b.argmax});
  RowScan r{m.value, m.id, a.finite + b.finite, kOk};
  if (a.error == kNaN || b.error == kNaN) r.error = kNaN;
  else if (a.error == kPosInf || b.error == kPosInf) r.error = kPosInf;
  else if (r.finite == 0) r.error = kNoFinite;
  return r;
}

// The whole row's scan from its S slice scans, by one warp; every lane of the warp gets it.
static __device__ RowScan warp_merge_scans(const RowScan* parts, int64_t S) {
  const int lane = threadIdx.x & 31;
  RowScan acc{0.f, -1, 0, kNoFinite};
  for (int64_t s = lane; s < S; s += 32) acc = merge_scans(acc, parts[s]);
  for (int offset = 16; offset > 0; offset >>= 1) {  // lane 0 ends with every lane's part
    RowScan o;
    o.max = __shfl_down_sync(0xffffffffu, acc.max, offset);
    o.argmax = __shfl_down_sync(0xffffffffu, acc.argmax, offset);
    o.finite = __shfl_down_sync(0xffffffffu, acc.finite, offset);
    o.error = __shfl_down_sync(0xffffffffu, acc.error, offset);
    acc = merge_scans(acc, o);
  }
  acc.max = __shfl_sync(0xffffffffu, acc.max, 0);
  acc.argmax = __shfl_sync(0xffffffffu, acc.argmax, 0);
  acc.finite = __shfl_sync(0xffffffffu, acc.finite, 0);
  acc.error = __shfl_sync(0xffffffffu, acc.error, 0);
  return acc;
}

// c comes after `taken` in the order (logit desc, id asc). Selections take their winners in that order,
// so "not yet taken" is "after the last winner": no per-token marks to keep.
__device__ __forceinline__ bool after(const ArgMax& c, const ArgMax& taken) {
  return taken.id < 0 || c.value < taken.value || (c.value == taken.value && c.id > taken.id);
}

}  // namespace saguaro::cuda_detail
