// CUDA twin of fanout_candidates_cpu: one block per (row, position) selects the top-F_j by radix
// select, then sorts the (few) winners by (logit desc, id asc).
#include <sstream>
#include <vector>

#include "row_primitives.cuh"
#include "saguaro/fanout.hpp"

namespace saguaro {

namespace {

__global__ void fanout_kernel(const float* draft_logits, const int32_t* drafted, const int32_t* fanout, int64_t K,
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
  fanout_kernel<<<static_cast<unsigned>(cells), kThreads, 0, stream>>>(draft_logits, drafted, d_fanout.get(), K, V, Fmax,
                                                                      out_tokens, d_errors.get());
  check_cuda(cudaGetLastError(), "fanout_candidates launch");
  std::vector<int32_t> errors(static_cast<size_t>(cells));
  check_cuda(cudaMemcpyAsync(errors.data(), d_errors.get(), errors.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
             "fanout_candidates errors");
  check_cuda(cudaStreamSynchronize(stream), "fanout_candidates");
  for (int64_t c = 0; c < cells; ++c)
    if (errors[c]) raise_row_error("fanout_candidates", c / (K + 1), errors[c], c % (K + 1));
}

}  // namespace saguaro
