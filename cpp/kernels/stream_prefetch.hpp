// Software prefetch of the next column group's records for the x16 quantized GEMMs (quant_q4k16.cpp,
// quant_q6k16.cpp, quant_b16.cpp).
//
// Why: with several rows (a verification, a tree step) a tile is compute-bound, and its later row tiles
// read the group's records from cache, so the hardware prefetcher (driven by demand misses) leaves DRAM
// idle while a group is multiplied: the 5-row product cost the 1-row stream plus the 5-row compute
// (measured 2.2x a 1-row product on 481 MB of Q4_K; 1.2x with this prefetch). Prefetching the next
// group into L2 while this one is multiplied keeps the stream and the compute overlapped. Spread in
// parts over all of the group's row tiles, so the miss buffers never hold more than a few lines at once:
// at 16 rows the first tile alone asked for them faster than one core's misses are served, and the
// stream and the compute ran one after the other (the 0.5B draft's Q5_0 matrices at 16 rows: 61.7 ms
// with the first tile prefetching, 50.4 spread over all four).
#pragma once

#include <cstdint>

namespace saguaro::detail {

constexpr int64_t kCacheLine = 64;

// The first cache line of part `part` of `parts` of a record of `bytes` (part == parts: its end).
inline int64_t part_edge(int64_t bytes, int64_t part, int64_t parts) {
  return (bytes + kCacheLine - 1) / kCacheLine * part / parts;
}

// Prefetches lines [begin, end) of the record at p into L2 (no-op when p is null).
inline void prefetch_lines(const uint8_t* p, int64_t begin, int64_t end) {
  if (p == nullptr) return;
  for (int64_t l = begin; l < end; ++l) __builtin_prefetch(p + l * kCacheLine, 0, 2);
}

// Prefetches part `part` of `parts` of [p, p + bytes) into L2 (no-op when p is null).
inline void prefetch_part(const uint8_t* p, int64_t bytes, int64_t part, int64_t parts) {
  prefetch_lines(p, part_edge(bytes, part, parts), part_edge(bytes, part + 1, parts));
}

// A row tile's kParts parts of the next group's record: part row_tile * kParts + i of row_tiles * kParts,
// prefetch_part's split with its divisions done once per tile. A prefetch_part call per sub-block ran
// two 64-bit divisions for every few dozen vpdpbusd of a multi-row tile.
template <int kParts>
class PrefetchPlan {
 public:
  PrefetchPlan(int64_t bytes, int row_tile, int row_tiles) {
    const int64_t parts = static_cast<int64_t>(row_tiles) * kParts;
    for (int i = 0; i <= kParts; ++i) edge_[i] = part_edge(bytes, static_cast<int64_t>(row_tile) * kParts + i, parts);
  }
  // Prefetches part i of the record at p into L2 (no-op when p is null).
  void fetch(const uint8_t* p, int i) const { prefetch_lines(p, edge_[i], edge_[i + 1]); }

 private:
  int64_t edge_[kParts + 1];
};

}  // namespace saguaro::detail
