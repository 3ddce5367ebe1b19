// CUDA twin of process_probs_cpu: one block per row.
#include <vector>

#include "row_primitives.cuh"
#include "saguaro/logits_processing.hpp"

namespace saguaro {

namespace {

__global__ void process_kernel(const float* logits, const ProcessParams* params, int64_t V, float* out,
                               double* weights, int32_t* errors) {
  const int64_t r = blockIdx.x;
  const int32_t e = cuda_detail::process_row(logits + r * V, V, params[r], true, out + r * V, weights + r * V);
  if (threadIdx.x == 0) errors[r] = e;
}

}  // namespace

void process_probs_cuda(const float* logits, const ProcessParams* params, int64_t rows, int64_t vocab,
                        float* probs_out, void* stream_ptr) {
  using namespace cuda_detail;
  if (rows < 0 || vocab < 1) throw std::invalid_argument("process_probs: need rows >= 0 and vocab >= 1");
  for (int64_t r = 0; r < rows; ++r) validate_process_params(params[r], r, "process_probs");
  if (rows == 0) return;
  if (rows > 2147483647) throw std::invalid_argument("process_probs: too many rows for one launch");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  DeviceBuffer<ProcessParams> d_params(static_cast<size_t>(rows), stream);
  DeviceBuffer<int32_t> d_errors(static_cast<size_t>(rows), stream);
  DeviceBuffer<double> d_weights(static_cast<size_t>(rows * vocab), stream);
  d_params.upload(params, static_cast<size_t>(rows));
  process_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, d_params.get(), vocab, probs_out,
                                                                      d_weights.get(), d_errors.get());
  check_cuda(cudaGetLastError(), "process_probs launch");
  std::vector<int32_t> errors(static_cast<size_t>(rows));
  check_cuda(cudaMemcpyAsync(errors.data(), d_errors.get(), errors.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
             "process_probs errors");
  check_cuda(cudaStreamSynchronize(stream), "process_probs");
  for (int64_t r = 0; r < rows; ++r)
    if (errors[r]) raise_row_error("process_probs", r, errors[r], -1);
}

}  // namespace saguaro
