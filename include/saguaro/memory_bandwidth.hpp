// The machine's memory read bandwidth, measured: the roofline of a decode whose weights stream from DRAM.
#pragma once

#include <cstdint>

namespace saguaro {

// Bytes per second that `threads` threads (created here, so they inherit the caller's CPU affinity)
// read from a buffer of `bytes` bytes (allocated and written once here; far past the caches when it
// is larger than the last-level cache), the best of `reps` passes. Every pass reads every byte once,
// split into contiguous parts, with independent accumulators (no compute bound). Throws
// std::invalid_argument for bytes < 1 MiB or > 64 GiB, threads outside [1, 256] or reps < 1.
double memory_read_bandwidth(int64_t bytes, int threads, int reps);

}  // namespace saguaro
