#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "saguaro/fanout.hpp"
#include "saguaro/sample.hpp"
#include "saguaro/verify.hpp"
#include "test_kernels_util.hpp"

using namespace saguaro;

// The runtime calls the kernels from its target and draft worker threads at the same time: the
// per-thread scratch buffers must keep concurrent calls independent and results identical.
TEST(KernelsThreads, ConcurrentCallsMatchASingleThread) {
  std::mt19937 rng(21);
  const int64_t B = 6, K = 3, V = 3000;
  const auto logits = saguaro::testing_util::random_logits(rng, B * (K + 1) * V);
  std::vector<ProcessParams> params(B * (K + 1));
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].temperature = (i % 5 == 0) ? 0.f : 0.9f;
    params[i].top_k = (i % 3 == 0) ? 100 : 0;
    params[i].top_p = (i % 2 == 0) ? 0.9f : 1.f;
    params[i].saguaro_c = 0.5f;
    params[i].saguaro_topn = 3;
  }
  std::vector<RowKey> keys(B * (K + 1));
  std::vector<int64_t> pos(B * (K + 1));
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i].seed = i;
    pos[i] = int64_t(i);
  }
  auto run = [&](std::vector<int32_t>* tokens, std::vector<int32_t>* verdict, std::vector<int32_t>* fan) {
    const int64_t N = B * K;
    std::vector<float> q(N * V);
    tokens->assign(N, 0);
    sample_rows_cpu(logits.data(), params.data(), keys.data(), pos.data(), N, V, q.data(), tokens->data());
    std::vector<int32_t> nd(B, int32_t(K)), accepted(B), bonus(B);
    std::vector<uint8_t> det(B, 0);
    verify_chain_cpu(logits.data(), tokens->data(), q.data(), nd.data(), det.data(), params.data(), keys.data(),
                     pos.data(), B, K, V, accepted.data(), bonus.data());
    *verdict = accepted;
    verdict->insert(verdict->end(), bonus.begin(), bonus.end());
    std::vector<int32_t> f(B * (K + 1), 4);
    fan->assign(B * (K + 1) * 4, 0);
    fanout_candidates_cpu(logits.data(), tokens->data(), f.data(), B, K, V, 4, fan->data());
  };
  std::vector<int32_t> t0, v0, f0;
  run(&t0, &v0, &f0);
  std::vector<std::vector<int32_t>> t(4), v(4), f(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int rep = 0; rep < 3; ++rep) run(&t[i], &v[i], &f[i]);
    });
  for (auto& th : threads) th.join();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(t[i], t0);
    EXPECT_EQ(v[i], v0);
    EXPECT_EQ(f[i], f0);
  }
}
