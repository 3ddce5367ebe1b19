// The runtime's kernels for rows on a CUDA device (row_kernels_cuda.hpp): on the model's stream, the
// small per-row inputs uploaded, the kernel run where the logits are, and only what the runtime reads
// copied back (tokens, accepted counts, candidates; probability rows only where asked for).
#include <algorithm>

#include "row_primitives.cuh"
#include "saguaro/fanout.hpp"
#include "saguaro/row_kernels.hpp"
#include "saguaro/row_kernels_cuda.hpp"
#include "saguaro/sample.hpp"

namespace saguaro::cuda_rows {

namespace {

using cuda_detail::check_cuda;
using cuda_detail::DeviceBuffer;

// Makes the block's device current for the calls in scope (a worker thread may be on another).
class OnDevice {
 public:
  explicit OnDevice(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~OnDevice() { cudaSetDevice(previous_); }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  int previous_ = 0;
};

cudaStream_t stream_of(const Logits& block) { return static_cast<cudaStream_t>(block.stream); }

template <class T>
void download(T* host, const T* device, size_t count, cudaStream_t stream, const char* what) {
  if (count) check_cuda(cudaMemcpyAsync(host, device, count * sizeof(T), cudaMemcpyDeviceToHost, stream), what);
}

}  // namespace

void verify_chain(const Logits& block, int64_t first_row, const int32_t* draft_tokens, const float* q, int32_t n,
                  bool deterministic, const ProcessParams& params, const RowKey& key, int64_t position,
                  int32_t* accepted, int32_t* bonus) {
  OnDevice on(block.device_id);
  const cudaStream_t stream = stream_of(block);
  const int64_t V = block.vocab;
  DeviceBuffer<int32_t> d_tokens(static_cast<size_t>(std::max(n, 1)), stream);
  DeviceBuffer<int32_t> d_out(2, stream);
  if (n > 0) d_tokens.upload(draft_tokens, static_cast<size_t>(n));
  // Sampled rows only: the draft's q rows live in the host cache (greedy and deterministic rows have none).
  DeviceBuffer<float> d_q(q != nullptr ? static_cast<size_t>(n) * V : 0, stream);
  if (q != nullptr) d_q.upload(q, static_cast<size_t>(n) * V);
  const uint8_t det = deterministic ? 1 : 0;
  verify_chain_cuda(block.row(first_row), d_tokens.get(), q != nullptr ? d_q.get() : nullptr, &n, &det, &params, &key,
                    &position, 1, n, V, d_out.get(), d_out.get() + 1, stream);
  int32_t out[2] = {0, -1};
  download(out, d_out.get(), 2, stream, "verify results");
  check_cuda(cudaStreamSynchronize(stream), "verify");
  *accepted = out[0];
  *bonus = out[1];
}

void sample_rows(const Logits& block, const std::vector<int64_t>& rows, const ProcessParams* params,
                 const RowKey* keys, const int64_t* positions, float* probs_out, int32_t* tokens_out,
                 const uint8_t* want_probs) {
  OnDevice on(block.device_id);
  const cudaStream_t stream = stream_of(block);
  const int64_t N = static_cast<int64_t>(rows.size()), V = block.vocab;
  const bool run = consecutive_rows(rows);
  DeviceBuffer<float> gathered(run ? 0 : static_cast<size_t>(N * V), stream);
  if (!run)
    for (int64_t i = 0; i < N; ++i)
      check_cuda(cudaMemcpyAsync(gathered.get() + i * V, block.row(rows[i]), sizeof(float) * V,
                                 cudaMemcpyDeviceToDevice, stream),
                 "gather rows");
  DeviceBuffer<float> d_probs(static_cast<size_t>(N * V), stream);
  DeviceBuffer<int32_t> d_tokens(static_cast<size_t>(N), stream);
  sample_rows_cuda(run ? block.row(rows[0]) : gathered.get(), params, keys, positions, N, V, d_probs.get(),
                   d_tokens.get(), stream);
  download(tokens_out, d_tokens.get(), static_cast<size_t>(N), stream, "sampled tokens");
  for (int64_t i = 0; i < N; ++i)
    if (want_probs == nullptr || want_probs[i])
      download(probs_out + i * V, d_probs.get() + i * V, static_cast<size_t>(V), stream, "q rows");
  check_cuda(cudaStreamSynchronize(stream), "sample rows");
}

void fanout_candidates(const Logits& block, int64_t first_row, const int32_t* drafted, const int32_t* fanout,
                       int64_t K, int64_t Fmax, int32_t* out_tokens) {
  OnDevice on(block.device_id);
  const cudaStream_t stream = stream_of(block);
  DeviceBuffer<int32_t> d_drafted(static_cast<size_t>(std::max<int64_t>(K, 1)), stream);
  DeviceBuffer<int32_t> d_out(static_cast<size_t>((K + 1) * Fmax), stream);
  if (K > 0) d_drafted.upload(drafted, static_cast<size_t>(K));
  fanout_candidates_cuda(block.row(first_row), d_drafted.get(), fanout, 1, K, block.vocab, Fmax, d_out.get(), stream);
  download(out_tokens, d_out.get(), static_cast<size_t>((K + 1) * Fmax), stream, "fan-out candidates");
  check_cuda(cudaStreamSynchronize(stream), "fan-out");
}

void rows_to_host(const Logits& block, const std::vector<int64_t>& rows, float* out) {
  OnDevice on(block.device_id);
  const cudaStream_t stream = stream_of(block);
  for (size_t i = 0; i < rows.size(); ++i)
    download(out + i * block.vocab, block.row(rows[i]), static_cast<size_t>(block.vocab), stream, "rows to host");
  check_cuda(cudaStreamSynchronize(stream), "rows to host");
}

}  // namespace saguaro::cuda_rows
