// CUDA twin of verify_chain_cpu.
// A batch of greedy rows only (the greedy fast path): every (row, position) the walk can reach is
// scanned in slices by many blocks at once (row_slices.cuh), then one warp per batch row merges the
// slices and walks the chain. Otherwise, sampled rows: one block per (row, position) first turns every
// target logits row into p in parallel (the expensive part); then one block per batch row walks the
// chain position by position, reading the prepared p rows and their error codes in the walk's order
// (greedy rows of such a batch scan their rows in that walk).
#include <sstream>
#include <vector>

#include "row_slices.cuh"
#include "saguaro/verify.hpp"

namespace saguaro {

namespace {

struct VerifyRow {
  ProcessParams params;  // the target's; Saguaro fields cleared
  RowKey key;
  int64_t position;      // absolute position of x1
  int32_t num_draft;
  int32_t deterministic;
};

// errors[b] = code * 65536 + position
// p rows for every sampled position the walk can reach; row_errors[b * (K + 1) + i] = RowError.
__global__ void prepare_kernel(const float* target_logits, const VerifyRow* rows, int64_t K, int64_t V, float* p_rows,
                               double* weights, int32_t* row_errors) {
  const int64_t cell = blockIdx.x;
  const int64_t b = cell / (K + 1), i = cell % (K + 1);
  const VerifyRow row = rows[b];
  if (row.params.temperature == 0.f || i > row.num_draft) return;
  const int32_t e = cuda_detail::process_row(target_logits + cell * V, V, row.params, false, p_rows + cell * V,
                                                weights + cell * V);
  if (threadIdx.x == 0) row_errors[cell] = e;
}

// Greedy fast path, step 1: block (cell, slice) scans one slice of one target row; rows past a batch
// row's drafts are never reached by the walk and are skipped.
__global__ void greedy_slices_kernel(const float* target_logits, const VerifyRow* rows, int64_t K, int64_t V, int64_t S,
                                     cuda_detail::RowScan* parts) {
  const int64_t cell = blockIdx.x / S;
  if (cell % (K + 1) > rows[cell / (K + 1)].num_draft) return;  // block-uniform
  cuda_detail::scan_block_slice(target_logits, V, S, parts);
}

// Greedy fast path, step 2: one warp per batch row merges each position's slices and walks the chain.
__global__ void greedy_walk_kernel(const int32_t* draft_tokens, const VerifyRow* rows, int64_t K, int64_t V, int64_t S,
                                   const cuda_detail::RowScan* parts, int32_t* accepted, int32_t* bonus,
                                   int32_t* errors) {
  using namespace cuda_detail;
  const int64_t b = blockIdx.x;
  const int32_t* x = draft_tokens + b * K;
  const int32_t n = rows[b].num_draft;
  auto finish = [&](int32_t a, int32_t t, int32_t code, int32_t position) {
    if (threadIdx.x == 0) {
      accepted[b] = a;
      bonus[b] = t;
      errors[b] = code ? code * 65536 + position : 0;
    }
  };
  for (int32_t i = 0; i < n; ++i)
    if (x[i] < 0 || x[i] >= V) return finish(0, -1, kBadToken, i);
  for (int32_t i = 0; i <= n; ++i) {
    const RowScan scan = warp_merge_scans(parts + (b * (K + 1) + i) * S, S);
    if (scan.error != kOk) return finish(0, -1, scan.error, i);
    if (i == n || x[i] != scan.argmax) return finish(i, scan.argmax, kOk, 0);
  }
}

__global__ void verify_kernel(const float* target_logits, const int32_t* draft_tokens, const float* q,
                              const VerifyRow* rows, int64_t K, int64_t V, const float* p_rows,
                              const int32_t* row_errors, int32_t* accepted, int32_t* bonus, int32_t* errors) {
  using namespace cuda_detail;
  const int64_t b = blockIdx.x;
  const VerifyRow row = rows[b];
  const float* logits_b = target_logits + b * (K + 1) * V;
  const int32_t* x = draft_tokens + b * K;
  const int32_t n = row.num_draft;
  auto finish = [&](int32_t a, int32_t t, int32_t code, int32_t position) {
    if (threadIdx.x == 0) {
      accepted[b] = a;
      bonus[b] = t;
      errors[b] = code ? code * 65536 + position : 0;
    }
  };
  for (int32_t i = 0; i < n; ++i) {
    if (x[i] < 0 || x[i] >= V) return finish(0, -1, kBadToken, i);
  }
  if (row.params.temperature == 0.f) {
    for (int32_t i = 0; i <= n; ++i) {
      const RowScan scan = scan_row(logits_b + i * V, V);
      if (scan.error != kOk) return finish(0, -1, scan.error, i);
      if (i == n || x[i] != scan.argmax) return finish(i, scan.argmax, kOk, 0);
    }
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    const float* p = p_rows + (b * (K + 1) + i) * V;
    const int32_t e = row_errors[b * (K + 1) + i];
    if (e != kOk) return finish(0, -1, e, i);
    const int32_t xi = x[i];
    const double u = keyed_uniform(row.key.seed, row.key.stream, row.position + i, kAccept);
    const double r = keyed_uniform(row.key.seed, row.key.stream, row.position + i, kResidual);
    int32_t token = -1;
    if (row.deterministic) {
      if (u < static_cast<double>(p[xi])) continue;
      token = sample_by(V, r, [p, xi](int64_t t) { return t == xi ? 0.f : p[t]; });
    } else {
      const float* qi = q + (b * K + i) * V;
      const float qx = qi[xi];
      if (!(qx >= 0.f && qx <= 1.f)) return finish(0, -1, kBadQ, i);
      if (u * static_cast<double>(qx) < static_cast<double>(p[xi])) continue;
      token = sample_by(V, r, [p, qi](int64_t t) {
        const float d = p[t] - qi[t];
        return d > 0.f ? d : 0.f;
      });
    }
    if (token < 0) token = sample_by(V, r, [p](int64_t t) { return p[t]; });
    return finish(i, token, kOk, 0);
  }
  const float* p = p_rows + (b * (K + 1) + n) * V;
  const int32_t e = row_errors[b * (K + 1) + n];
  if (e != kOk) return finish(0, -1, e, n);
  const double r = keyed_uniform(row.key.seed, row.key.stream, row.position + n, kResidual);
  const int32_t token = sample_by(V, r, [p](int64_t t) { return p[t]; });
  finish(n, token, kOk, 0);
}

}  // namespace

void verify_chain_cuda(const float* target_logits, const int32_t* draft_tokens, const float* q,
                       const int32_t* num_draft, const uint8_t* deterministic, const ProcessParams* params,
                       const RowKey* keys, const int64_t* positions, int64_t B, int64_t K, int64_t V,
                       int32_t* accepted, int32_t* bonus, void* stream_ptr) {
  using namespace cuda_detail;
  if (B < 0 || K < 0 || V < 1) throw std::invalid_argument("verify_chain: need B >= 0, K >= 0, V >= 1");
  if (B > 2147483647) throw std::invalid_argument("verify_chain: too many rows for one launch");
  std::vector<VerifyRow> rows(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    validate_process_params(params[b], b, "verify_chain");
    if (num_draft[b] < 0 || num_draft[b] > K) {
      std::ostringstream s;
      s << "verify_chain: num_draft[" << b << "] = " << num_draft[b] << " must be in [0, K=" << K << "]";
      throw std::invalid_argument(s.str());
    }
    const bool det = deterministic && deterministic[b] != 0;
    if (!q && num_draft[b] > 0 && !det && params[b].temperature != 0.f) {
      std::ostringstream s;
      s << "verify_chain: row " << b << " is sampled with a non-deterministic proposal but q is null";
      throw std::invalid_argument(s.str());
    }
    ProcessParams target = params[b];
    target.saguaro_c = 1.f;
    target.saguaro_topn = 0;
    rows[b] = VerifyRow{target, keys[b], positions[b], num_draft[b], det ? 1 : 0};
  }
  if (B == 0) return;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  DeviceBuffer<VerifyRow> d_rows(rows.size(), stream);
  DeviceBuffer<int32_t> d_errors(rows.size(), stream);
  d_rows.upload(rows.data(), rows.size());
  bool sampled = false;
  for (const auto& r : rows) sampled = sampled || r.params.temperature != 0.f;
  const int64_t cells = B * (K + 1);
  if (!sampled) {
    const int64_t S = slice_count(V);
    if (cells * S > 2147483647) throw std::invalid_argument("verify_chain: too many rows for one launch");
    DeviceBuffer<RowScan> d_parts(static_cast<size_t>(cells * S), stream);
    greedy_slices_kernel<<<static_cast<unsigned>(cells * S), kThreads, 0, stream>>>(target_logits, d_rows.get(), K, V, S,
                                                                                   d_parts.get());
    check_cuda(cudaGetLastError(), "verify_chain slices launch");
    greedy_walk_kernel<<<static_cast<unsigned>(B), 32, 0, stream>>>(draft_tokens, d_rows.get(), K, V, S, d_parts.get(),
                                                                   accepted, bonus, d_errors.get());
  } else {
    if (cells > 2147483647) throw std::invalid_argument("verify_chain: too many rows for one launch");
    DeviceBuffer<float> d_p(static_cast<size_t>(cells * V), stream);
    DeviceBuffer<int32_t> d_row_errors(static_cast<size_t>(cells), stream);
    DeviceBuffer<double> d_weights(static_cast<size_t>(cells * V), stream);
    check_cuda(cudaMemsetAsync(d_row_errors.get(), 0, static_cast<size_t>(cells) * sizeof(int32_t), stream),
               "verify_chain row errors");
    prepare_kernel<<<static_cast<unsigned>(cells), kThreads, 0, stream>>>(target_logits, d_rows.get(), K, V, d_p.get(),
                                                                         d_weights.get(), d_row_errors.get());
    check_cuda(cudaGetLastError(), "verify_chain prepare launch");
    verify_kernel<<<static_cast<unsigned>(B), kThreads, 0, stream>>>(target_logits, draft_tokens, q, d_rows.get(), K, V,
                                                                    d_p.get(), d_row_errors.get(), accepted, bonus,
                                                                    d_errors.get());
  }
  check_cuda(cudaGetLastError(), "verify_chain launch");
  std::vector<int32_t> errors(rows.size());
  check_cuda(cudaMemcpyAsync(errors.data(), d_errors.get(), errors.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream),
             "verify_chain errors");
  check_cuda(cudaStreamSynchronize(stream), "verify_chain");
  for (int64_t b = 0; b < B; ++b)
    if (errors[b]) raise_row_error("verify_chain", b, errors[b] / 65536, errors[b] % 65536);
}

}  // namespace saguaro
