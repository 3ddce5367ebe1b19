// CUDA twin of sample_rows_cpu: one block per row processes it (Saguaro included) and samples it.
// A batch of greedy rows only (greedy drafting) takes the fast path: its rows are scanned in slices by
// many blocks (row_slices.cuh), one warp per row merges them, and q is the one-hot row at the argmax.
#include <vector>

#include "row_slices.cuh"
#include "saguaro/sample.hpp"

namespace saguaro {

namespace {

struct SampleRow {
  ProcessParams params;
  RowKey key;
  int64_t position;
};

__global__ void sample_kernel(const float* logits, const SampleRow* rows, int64_t V, float* probs_out,
                              double* weights, int32_t* tokens_out, int32_t* errors) {
  const int64_t n = blockIdx.x;
  const SampleRow row = rows[n];
  float* out = probs_out + n * V;
  const int32_t e = cuda_detail::process_row(logits + n * V, V, row.params, true, out, weights + n * V);
  if (e != cuda_detail::kOk) {
    if (threadIdx.x == 0) errors[n] = e;
    return;
  }
  const double u = keyed_uniform(row.key.seed, row.key.stream, row.position, kDraft);
  const int32_t token = cuda_detail::sample_by(V, u, [out](int64_t i) { return out[i]; });
  if (threadIdx.x == 0) {
    tokens_out[n] = token;
    errors[n] = cuda_detail::kOk;
  }
}

// Greedy fast path, step 1: block (row, slice) scans one slice.
__global__ void greedy_slices_kernel(const float* logits, int64_t V, int64_t S, cuda_detail::RowScan* parts) {
  cuda_detail::scan_block_slice(logits, V, S, parts);
}

// Greedy fast path, step 2: one warp per row; probs_out is zero already.
__global__ void greedy_pick_kernel(const cuda_detail::RowScan* parts, int64_t V, int64_t S, float* probs_out,
                                   int32_t* tokens_out, int32_t* errors) {
  const int64_t n = blockIdx.x;
  const cuda_detail::RowScan scan = cuda_detail::warp_merge_scans(parts + n * S, S);
  if (threadIdx.x != 0) return;
  errors[n] = scan.error;
  if (scan.error != cuda_detail::kOk) return;
  tokens_out[n] = scan.argmax;
  probs_out[n * V + scan.argmax] = 1.f;
}

}  // namespace

void sample_rows_cuda(const float* logits, const ProcessParams* params, const RowKey* keys, const int64_t* positions,
                      int64_t N, int64_t V, float* probs_out, int32_t* tokens_out, void* stream_ptr) {
  using namespace cuda_detail;
  if (N < 0 || V < 1) throw std::invalid_argument("sample_rows: need N >= 0 and V >= 1");
  for (int64_t n = 0; n < N; ++n) validate_process_params(params[n], n, "sample_rows");
  if (N == 0) return;
  if (N > 2147483647) throw std::invalid_argument("sample_rows: too many rows for one launch");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  std::vector<SampleRow> rows(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) rows[n] = SampleRow{params[n], keys[n], positions[n]};
  bool greedy = true;
  for (int64_t n = 0; n < N; ++n) greedy = greedy && params[n].temperature == 0.f;
  const int64_t S = slice_count(V);
  DeviceBuffer<int32_t> d_errors(rows.size(), stream);
  if (greedy && N * S <= 2147483647) {
    DeviceBuffer<RowScan> d_parts(static_cast<size_t>(N * S), stream);
    check_cuda(cudaMemsetAsync(probs_out, 0, static_cast<size_t>(N * V) * sizeof(float), stream), "sample_rows q rows");
    greedy_slices_kernel<<<static_cast<unsigned>(N * S), kThreads, 0, stream>>>(logits, V, S, d_parts.get());
    check_cuda(cudaGetLastError(), "sample_rows slices launch");
    greedy_pick_kernel<<<static_cast<unsigned>(N), 32, 0, stream>>>(d_parts.get(), V, S, probs_out, tokens_out,
                                                                   d_errors.get());
  } else {
    DeviceBuffer<SampleRow> d_rows(rows.size(), stream);
    DeviceBuffer<double> d_weights(static_cast<size_t>(N * V), stream);
    d_rows.upload(rows.data(), rows.size());
    sample_kernel<<<static_cast<unsigned>(N), kThreads, 0, stream>>>(logits, d_rows.get(), V, probs_out, d_weights.get(),
                                                                    tokens_out, d_errors.get());
  }
  check_cuda(cudaGetLastError(), "sample_rows launch");
  std::vector<int32_t> errors(rows.size());
  check_cuda(cudaMemcpyAsync(errors.data(), d_errors.get(), errors.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
             "sample_rows errors");
  check_cuda(cudaStreamSynchronize(stream), "sample_rows");
  for (int64_t n = 0; n < N; ++n)
    if (errors[n]) raise_row_error("sample_rows", n, errors[n], -1);
}

}  // namespace saguaro
