#pragma once
// Device building blocks of the CUDA kernels: one thread block processes one logits row.
//
// Same semantics as the CPU twins (cpp/kernels/row_primitives.*); where float reduction order differs:
//  - sums of weights are block reductions (fixed order per launch configuration, so deterministic)
//    instead of the CPU's id-ordered sequential sums: totals may differ in the last bits;
//  - top-p mass is accumulated in 2^-60 fixed point (deterministic integer atomics) instead of the
//    CPU's sequential double cumsum: a cut can differ only when the prefix mass is within ~V * 2^-60
//    of top_p;
//  - the top-p order is (logit desc, id asc) rather than (probability desc, id asc): identical except
//    when distinct logits round to the same double probability (needs temperature > ~1e10);
//  - the inverse CDF sums per-thread chunks, walks them in id order, then the crossing chunk in
//    32-token warp prefix sums: a token can differ only when u * total lies within a few ulps of a
//    CDF step;
//  - exp() is CUDA's double exp (max 1 ulp error), the CPU uses the C library's.
// Greedy rows, top-k, fan-out ordering and every integer decision outside those boundaries agree bit
// for bit with the CPU for the same keyed uniforms.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "saguaro/philox.hpp"
#include "saguaro/logits_processing.hpp"

namespace saguaro::cuda_detail {

constexpr int kThreads = 512;  // one block per row: more threads, more of the SM for one row
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 8;  // tokens per thread whose loads are issued together in the streaming passes

// Error codes written per row by the kernels (0 = fine); the host turns them into std::invalid_argument.
enum RowError : int32_t { kOk = 0, kNaN = 1, kPosInf = 2, kNoFinite = 3, kBadToken = 4, kBadQ = 5 };

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

// A device allocation bound to a stream (stream-ordered malloc / free), released on scope exit.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    if (count) check_cuda(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count * sizeof(T), stream), "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  void upload(const T* host, size_t count) {
    if (count) check_cuda(cudaMemcpyAsync(ptr_, host, count * sizeof(T), cudaMemcpyHostToDevice, stream_), "upload");
  }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Monotone map of a float to uint32 (larger float -> larger key); -0 and +0 share a key.
__device__ __forceinline__ uint32_t order_key(float f) {
  f = f + 0.0f;  // -0 -> +0
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block in a fixed order; every thread gets the result.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T parts[kWarps];
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) parts[threadIdx.x >> 5] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < kWarps; ++w) total += parts[w];
  __syncthreads();
  return total;
}

struct ArgMax {
  float value;
  int32_t id;  // -1: none
};

__device__ __forceinline__ ArgMax better_of(ArgMax a, ArgMax b) {
  if (b.id < 0) return a;
  if (a.id < 0) return b;
  if (b.value > a.value || (b.value == a.value && b.id < a.id)) return b;
  return a;
}

static __device__ ArgMax block_argmax(ArgMax v) {
  __shared__ ArgMax parts[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) {
    ArgMax o;
    o.value = __shfl_down_sync(0xffffffffu, v.value, offset);
    o.id = __shfl_down_sync(0xffffffffu, v.id, offset);
    v = better_of(v, o);
  }
  if ((threadIdx.x & 31) == 0) parts[threadIdx.x >> 5] = v;
  __syncthreads();
  ArgMax best{0.f, -1};
  for (int w = 0; w < kWarps; ++w) best = better_of(best, parts[w]);
  __syncthreads();
  return best;
}

struct RowScan {
  float max;
  int32_t argmax;
  long long finite;
  int32_t error;  // RowError
};

// The block's scan from each thread's share: argmax, finite count and the error, by precedence NaN,
// +inf, no finite value. Every thread gets it.
static __device__ RowScan block_scan(ArgMax best, long long finite, int nan, int pos_inf) {
  best = block_argmax(best);
  finite = block_sum(finite);
  nan = block_sum(nan);
  pos_inf = block_sum(pos_inf);
  RowScan s{best.value, best.id, finite, kOk};
  if (nan) s.error = kNaN;
  else if (pos_inf) s.error = kPosInf;
  else if (finite == 0) s.error = kNoFinite;
  return s;
}

static __device__ RowScan scan_row(const float* logits, int64_t V) {
  ArgMax best{0.f, -1};
  long long finite = 0;
  int nan = 0, pos_inf = 0;
  // kUnroll independent loads in flight per thread: one load at a time leaves each iteration waiting
  // a full memory latency (this loop was latency-bound at ~500 cycles per element).
  for (int64_t base = threadIdx.x; base < V; base += kUnroll * kThreads) {
    float vals[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * kThreads;
      vals[u] = i < V ? logits[i] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * kThreads;
      if (i >= V) break;
      const float v = vals[u];
      if (isfinite(v)) {
        ++finite;
        best = better_of(best, ArgMax{v, static_cast<int32_t>(i)});
      } else if (isnan(v)) {
        nan = 1;
      } else if (v > 0.f) {
        pos_inf = 1;
      }
    }
  }
  return block_scan(best, finite, nan, pos_inf);
}

// A token set "top by (logit desc, id asc)" ends at the boundary (key, last_id):
// token i belongs iff include(i) and (key_i > key or (key_i == key and i <= last_id)).
struct Boundary {
  uint32_t key;
  int32_t last_id;
  bool cut;  // false: the set is everything included
};

__device__ __forceinline__ bool within(const Boundary& b, uint32_t key, int64_t i) {
  return !b.cut || key > b.key || (key == b.key && i <= b.last_id);
}

// The n-th (1-based) token in id order with pred(i) true; -1 when there are fewer.
template <class Pred>
__device__ int32_t nth_id(int64_t V, Pred pred, long long n) {
  __shared__ int warp_counts[kWarps];
  __shared__ int32_t found;
  if (threadIdx.x == 0) found = -1;
  __syncthreads();
  long long seen = 0;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t base = 0; base < V; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    const bool flag = i < V && pred(i);
    const unsigned ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, chunk = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) before += warp_counts[w];
      chunk += warp_counts[w];
    }
    const int rank = before + __popc(ballot & ((1u << lane) - 1u));  // flagged tokens before i in this chunk
    if (flag && seen + rank + 1 == n) found = static_cast<int32_t>(i);
    seen += chunk;
    __syncthreads();
    if (seen >= n) break;  // uniform: every thread has the same `seen`
  }
  __syncthreads();
  const int32_t result = found;
  __syncthreads();
  return result;
}

// The per-warp histograms of radix_boundary: one shared array for every instantiation (a __shared__
// array inside the template would be allocated once per instantiation and overflow shared memory).
static __device__ __forceinline__ unsigned long long (*radix_histograms())[256] {
  __shared__ unsigned long long histograms[kWarps][256];
  return histograms;
}

// The smallest id with pred(i) true, -1 when none: one pass and one block reduction (nth_id's
// chunk-by-chunk walk synchronises the block twice per chunk, hundreds of microseconds per row).
template <class Pred>
__device__ int32_t first_id(int64_t V, Pred pred) {
  constexpr int32_t kNone = 0x7fffffff;
  __shared__ int32_t parts[kWarps];
  int32_t best = kNone;
  for (int64_t base = threadIdx.x; base < V && best == kNone; base += kUnroll * kThreads) {
    bool hit[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * kThreads;
      hit[u] = i < V && pred(i);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (hit[u] && best == kNone) best = static_cast<int32_t>(base + u * kThreads);
  }
  for (int offset = 16; offset > 0; offset >>= 1) best = min(best, __shfl_down_sync(0xffffffffu, best, offset));
  if ((threadIdx.x & 31) == 0) parts[threadIdx.x >> 5] = best;
  __syncthreads();
  int32_t result = kNone;
  for (int w = 0; w < kWarps; ++w) result = min(result, parts[w]);
  __syncthreads();
  return result == kNone ? -1 : result;
}

// Radix select on order_key over the included tokens, from the largest key down, in four 8-bit
// digits: the boundary of the shortest (key desc, id asc) prefix whose amount reaches `target`.
// amount(i) is an unsigned 64-bit integer (a count, or a fixed-point mass) so that the shared-memory
// atomics are exact and the result deterministic. Tokens with equal keys have equal amounts.
template <class Include, class Amount>
__device__ Boundary radix_boundary(const float* logits, int64_t V, Include include, Amount amount,
                                   unsigned long long target) {
  // One histogram per warp: lanes of a warp that share a digit still take turns on its bin, but no
  // warp waits for another (one histogram for the block serialised the crowded digits of
  // language-model logits; a warp-vote sum per token cost 32 shuffles each). Integer sums, so the
  // result does not depend on the order of the additions.
  unsigned long long (*const warp_hist)[256] = radix_histograms();
  unsigned long long* const hist = warp_hist[0];
  __shared__ uint32_t prefix, mask;
  __shared__ unsigned long long above;
  __shared__ int reached;
  if (threadIdx.x == 0) {
    prefix = 0;
    mask = 0;
    above = 0;
    reached = 1;
  }
  __syncthreads();
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < kWarps * 256; d += kThreads) (&warp_hist[0][0])[d] = 0;
    __syncthreads();
    const uint32_t want = prefix, m = mask;
    unsigned long long* const mine = warp_hist[threadIdx.x >> 5];
    for (int64_t base = 0; base < V; base += kUnroll * kThreads) {
      int digits[kUnroll];
      unsigned long long amts[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {  // all loads first (latency), then the additions
        const int64_t i = base + u * kThreads + threadIdx.x;
        digits[u] = -1;
        amts[u] = 0;
        if (i < V && include(i)) {
          const uint32_t k = order_key(logits[i]);
          if ((k & m) == want) {
            digits[u] = static_cast<int>((k >> shift) & 255u);
            amts[u] = amount(i);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (digits[u] >= 0 && amts[u] != 0) atomicAdd(&mine[digits[u]], amts[u]);
    }
    __syncthreads();
    for (int d = threadIdx.x; d < 256; d += kThreads) {
      unsigned long long total = 0;
      for (int w = 0; w < kWarps; ++w) total += warp_hist[w][d];
      hist[d] = total;  // warp 0's row: only thread d reads and writes column d
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long acc = above;
      int chosen = -1;
      bool hit = false;
      for (int d = 255; d >= 0; --d) {
        if (hist[d] == 0) continue;
        chosen = d;  // the lowest non-empty digit if the target is never reached
        if (acc + hist[d] >= target) {
          hit = true;
          break;
        }
        acc += hist[d];
      }
      if (!hit) reached = 0;
      if (chosen < 0) chosen = 0;
      prefix |= static_cast<uint32_t>(chosen) << shift;
      mask |= 255u << shift;
      above = acc;
    }
    __syncthreads();
  }
  Boundary b{prefix, -1, reached != 0};
  const unsigned long long above_total = above;
  __syncthreads();
  if (!b.cut) return b;
  // Within the boundary key every token has the same amount: take them in id order.
  const uint32_t key = b.key;
  auto equal = [&](int64_t i) { return include(i) && order_key(logits[i]) == key; };
  const int32_t first = first_id(V, equal);
  if (first < 0) {
    b.cut = false;
    return b;
  }
  const unsigned long long each = amount(first);
  const unsigned long long rest = target - above_total;
  const long long n = each ? static_cast<long long>((rest + each - 1) / each) : 1;
  b.last_id = n <= 1 ? first : nth_id(V, equal, n);  // distinct logits: the boundary token is the first
  if (b.last_id < 0) b.cut = false;
  return b;
}

// Processes one row into out (docs/contracts.md §2). Returns a RowError (block-uniform).
// weights: V doubles of scratch. exp((l - max) / T) is computed once into it: the top-p and Saguaro
// passes below read each weight several times, and a double exp per token per pass dominated the row.
static __device__ int32_t process_row(const float* logits, int64_t V, const ProcessParams& p, bool saguaro, float* out,
                                      double* weights) {
  const RowScan scan = scan_row(logits, V);
  if (scan.error != kOk) return scan.error;
  if (p.temperature == 0.f) {
    for (int64_t i = threadIdx.x; i < V; i += kThreads) out[i] = (i == scan.argmax) ? 1.f : 0.f;
    __syncthreads();
    return kOk;
  }
  const double m = static_cast<double>(scan.max);
  const double t = static_cast<double>(p.temperature);
  auto finite = [&](int64_t i) { return isfinite(logits[i]) != 0; };
  #pragma unroll 8
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = logits[i];
    weights[i] = isfinite(v) ? exp((static_cast<double>(v) - m) / t) : 0.0;
  }
  __syncthreads();
  auto weight = [&](int64_t i) { return weights[i]; };
  auto one = [](int64_t) { return 1ull; };
  Boundary topk{0, -1, false};
  if (p.top_k > 0 && p.top_k < scan.finite) topk = radix_boundary(logits, V, finite, one, static_cast<unsigned long long>(p.top_k));
  auto in_k = [&](int64_t i) { return finite(i) && within(topk, order_key(logits[i]), i); };
  Boundary topp{0, -1, false};
  if (p.top_p < 1.f) {
    double sk = 0.0;
    #pragma unroll 8
    for (int64_t i = threadIdx.x; i < V; i += kThreads)
      if (in_k(i)) sk += weight(i);
    sk = block_sum(sk);
    constexpr double kScale = 1152921504606846976.0;  // 2^60
    auto mass = [&](int64_t i) { return static_cast<unsigned long long>(weight(i) / sk * kScale); };
    auto positive = [&](int64_t i) { return in_k(i) && weight(i) > 0.0; };
    topp = radix_boundary(logits, V, positive, mass, static_cast<unsigned long long>(static_cast<double>(p.top_p) * kScale));
  }
  auto kept = [&](int64_t i) { return in_k(i) && within(topp, order_key(logits[i]), i); };
  double c = 1.0;
  Boundary topn{0, -1, false};
  if (saguaro && p.saguaro_c < 1.f && p.saguaro_topn > 0) {
    c = static_cast<double>(p.saguaro_c);
    if (p.saguaro_topn < scan.finite)
      topn = radix_boundary(logits, V, finite, one, static_cast<unsigned long long>(p.saguaro_topn));
    double scaled = 0.0;
    #pragma unroll 8
    for (int64_t i = threadIdx.x; i < V; i += kThreads)
      if (kept(i)) scaled += within(topn, order_key(logits[i]), i) ? weight(i) * c : weight(i);
    if (block_sum(scaled) <= 0.0) c = 1.0;  // C = 0 with all mass in the top-n: unscaled
  }
  auto final_weight = [&](int64_t i) {
    if (!kept(i)) return 0.0;
    const double w = weight(i);
    return (c != 1.0 && within(topn, order_key(logits[i]), i)) ? w * c : w;
  };
  double total = 0.0;
  #pragma unroll 8
  for (int64_t i = threadIdx.x; i < V; i += kThreads) total += final_weight(i);
  total = block_sum(total);
  #pragma unroll 8
  for (int64_t i = threadIdx.x; i < V; i += kThreads) out[i] = static_cast<float>(final_weight(i) / total);
  __syncthreads();
  return kOk;
}

// Inverse CDF (docs/contracts.md §1) with weights get(i): each thread sums a contiguous chunk, one
// thread walks the chunk sums in id order, then one warp walks the chunk that crosses u * total.
// Returns the token to every thread; -1 when no weight is positive.
template <class Get>
__device__ int32_t sample_by(int64_t V, double u, Get get) {
  __shared__ double chunk_sum[kThreads];
  __shared__ int32_t chunk_last[kThreads];
  __shared__ int32_t result;
  __shared__ int crossing;
  __shared__ double crossing_acc, crossing_target;
  const int64_t per = (V + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * per;
  const int64_t end = begin + per < V ? begin + per : V;
  double s = 0.0;
  int32_t last = -1;
  #pragma unroll 8
  for (int64_t i = begin; i < end; ++i) {
    const float w = get(i);
    if (w > 0.f) {
      s += static_cast<double>(w);
      last = static_cast<int32_t>(i);
    }
  }
  chunk_sum[threadIdx.x] = s;
  chunk_last[threadIdx.x] = last;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    int32_t last_positive = -1;
    for (int c = 0; c < kThreads; ++c) {
      total += chunk_sum[c];
      if (chunk_last[c] >= 0) last_positive = chunk_last[c];
    }
    const double target = u * total;
    double acc = 0.0;
    int chosen = -1;
    for (int c = 0; c < kThreads; ++c) {
      if (acc + chunk_sum[c] > target) {
        chosen = c;
        break;
      }
      acc += chunk_sum[c];
    }
    crossing = chosen;
    crossing_acc = acc;
    crossing_target = target;
    result = last_positive;
  }
  __syncthreads();
  // The crossing chunk is walked by warp 0, 32 tokens at a time with a warp prefix sum (one thread
  // walking it alone costs hundreds of dependent global loads).
  if (crossing >= 0 && threadIdx.x < 32) {
    const int lane = threadIdx.x;
    const int64_t b = crossing * per, e = b + per < V ? b + per : V;
    double acc = crossing_acc;
    const double target = crossing_target;
    for (int64_t s = b; s < e; s += 32) {
      const int64_t i = s + lane;
      const float w = i < e ? get(i) : 0.f;
      double x = w > 0.f ? static_cast<double>(w) : 0.0;
      for (int offset = 1; offset < 32; offset <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, x, offset);
        if (lane >= offset) x += y;
      }
      const unsigned over = __ballot_sync(0xffffffffu, w > 0.f && acc + x > target);
      if (over) {
        if (lane == __ffs(over) - 1) result = static_cast<int32_t>(i);
        break;
      }
      acc += __shfl_sync(0xffffffffu, x, 31);
    }
  }
  __syncthreads();
  const int32_t token = result;
  __syncthreads();
  return token;
}

// Host side: turn per-row error codes into std::invalid_argument.
inline void raise_row_error(const char* what, int64_t row, int32_t code, int64_t position) {
  std::string where = "row " + std::to_string(row);
  if (position >= 0) where += " position " + std::to_string(position);
  switch (code) {
    case kNaN: throw std::invalid_argument(std::string(what) + ": logits of " + where + " contain NaN");
    case kPosInf: throw std::invalid_argument(std::string(what) + ": logits of " + where + " contain +inf (give finite logits; -inf marks a forbidden token)");
    case kNoFinite: throw std::invalid_argument(std::string(what) + ": logits of " + where + " have no finite value (every token is -inf)");
    case kBadToken: throw std::invalid_argument(std::string(what) + ": a token id of " + where + " is outside [0, V)");
    case kBadQ: throw std::invalid_argument(std::string(what) + ": q of " + where + " at the draft token is not a probability");
    default: throw std::runtime_error(std::string(what) + ": unknown device error code at " + where);
  }
}

}  // namespace saguaro::cuda_detail
