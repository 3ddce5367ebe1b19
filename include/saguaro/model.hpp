#pragma once
// The model adapter interface of contracts §3, as the runtime sees it. The Python bindings wrap a
// Python adapter object in it (cpp/bindings/py_model.hpp); C++ tests implement it with toy models.
#include <cstdint>
#include <memory>
#include <vector>

namespace saguaro {

// A block of float32 logits rows owned by whoever produced them; `owner` keeps the memory alive.
// The rows stay where the model made them (the device-resident contract, docs/contracts.md §3): on
// the host, or on a CUDA device, ordered on the stream the model ran on. The runtime runs each kernel
// where its rows live (row_kernels.hpp).
struct Logits {
  static constexpr int32_t kHost = 1;  // DLPack's kDLCPU
  static constexpr int32_t kCuda = 2;  // DLPack's kDLCUDA

  const float* data = nullptr;
  int64_t rows = 0;
  int64_t vocab = 0;
  std::shared_ptr<const void> owner;
  int32_t device_type = kHost;
  int32_t device_id = 0;
  void* stream = nullptr;  // cudaStream_t the rows were written on (null: the default stream)

  const float* row(int64_t i) const { return data + i * vocab; }
  bool on_host() const { return device_type == kHost; }
};

class Model {
 public:
  virtual ~Model() = default;

  virtual int64_t vocab_size() const = 0;
  virtual int64_t max_context() const = 0;
  virtual std::vector<int32_t> eos_token_ids() const = 0;

  // Allocates the sequences' KV, runs the prompts; rows = logits at each prompt's last position.
  virtual Logits prefill(const std::vector<int64_t>& seq_ids, const std::vector<std::vector<int32_t>>& prompts) = 0;
  // Appends tokens to each sequence; one row per new position, ordered by sequence then position.
  virtual Logits extend(const std::vector<int64_t>& seq_ids, const std::vector<std::vector<int32_t>>& tokens) = 0;
  // One branch-decoding step (contracts §3): row i sees visible[i] KV positions of seq_ids[i], its own
  // `depth` earlier branch tokens, then tokens[i] at position visible[i] + depth. KV length unchanged.
  virtual Logits tree_step(const std::vector<int64_t>& seq_ids, const std::vector<int64_t>& visible,
                           const std::vector<int32_t>& tokens, int32_t depth) = 0;
  virtual void truncate(int64_t seq_id, int64_t length) = 0;
  virtual int64_t length(int64_t seq_id) = 0;
  virtual void release(int64_t seq_id) = 0;

  // Called on a worker thread before its first / after its last call into this model (a Python
  // adapter keeps one interpreter thread state per worker for the thread's lifetime).
  virtual void attach_thread() {}
  virtual void detach_thread() {}
};

}  // namespace saguaro
