// The runtime's kernels run where the logits live (row_kernels.hpp): host rows give exactly the CPU
// twins' results from any row of a block (gathered or not); rows on a device a build cannot read are
// refused with a message that says what to do, never read as host memory.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "saguaro/fanout.hpp"
#include "saguaro/row_kernels.hpp"
#include "saguaro/sample.hpp"

namespace saguaro {
namespace {

constexpr int64_t V = 37;

Logits host_block(std::vector<float>& storage, int64_t rows) {
  storage.resize(static_cast<size_t>(rows * V));
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = std::sin(0.37f * static_cast<float>(i)) * 4.f;
  Logits l;
  l.data = storage.data();
  l.rows = rows;
  l.vocab = V;
  return l;
}

TEST(RowKernels, HostRowsGiveTheCpuTwinsResults) {
  std::vector<float> storage;
  const Logits block = host_block(storage, 6);
  const ProcessParams greedy{0.f, 0, 1.f, 1.f, 0};
  const ProcessParams sampled{0.8f, 0, 1.f, 1.f, 0};
  const RowKey key{11, 3};
  // verify rows 2..4 (n = 2 drafts) against the CPU twin on the same rows
  const std::vector<int32_t> drafts{5, 9};
  int32_t a = -1, b = -1, ref_a = -1, ref_b = -1;
  verify_chain_where(block, 2, drafts.data(), nullptr, 2, true, sampled, key, 40, &a, &b);
  const int32_t n = 2;
  const uint8_t det = 1;
  const int64_t pos = 40;
  verify_chain_cpu(block.row(2), drafts.data(), nullptr, &n, &det, &sampled, &key, &pos, 1, 2, V, &ref_a, &ref_b);
  EXPECT_EQ(a, ref_a);
  EXPECT_EQ(b, ref_b);
  // sample rows 4, 1 (a gather) and 2, 3 (a run)
  for (const std::vector<int64_t>& rows : {std::vector<int64_t>{4, 1}, std::vector<int64_t>{2, 3}}) {
    const std::vector<ProcessParams> params{sampled, greedy};
    const std::vector<RowKey> keys{key, key};
    const std::vector<int64_t> positions{7, 8};
    std::vector<float> probs(2 * V), ref_probs(2 * V), gathered;
    std::vector<int32_t> tokens(2), ref_tokens(2);
    sample_rows_where(block, rows, params.data(), keys.data(), positions.data(), probs.data(), tokens.data(), nullptr);
    for (int64_t r : rows) gathered.insert(gathered.end(), block.row(r), block.row(r) + V);
    sample_rows_cpu(gathered.data(), params.data(), keys.data(), positions.data(), 2, V, ref_probs.data(),
                    ref_tokens.data());
    EXPECT_EQ(tokens, ref_tokens);
    EXPECT_EQ(probs, ref_probs);
    EXPECT_EQ(rows_to_host(block, rows), gathered);
  }
  // fan-out from trunk rows 1..3
  const std::vector<int32_t> fanout{2, 1, 3};
  std::vector<int32_t> cand(3 * 3), ref(3 * 3);
  fanout_candidates_where(block, 1, drafts.data(), fanout.data(), 2, 3, cand.data());
  fanout_candidates_cpu(block.row(1), drafts.data(), fanout.data(), 1, 2, V, 3, ref.data());
  EXPECT_EQ(cand, ref);
}

TEST(RowKernels, RowsOutsideTheBlockAreADefect) {
  std::vector<float> storage;
  const Logits block = host_block(storage, 3);
  const ProcessParams greedy{0.f, 0, 1.f, 1.f, 0};
  const std::vector<int32_t> drafts{1, 2, 3};
  int32_t a = 0, b = 0;
  EXPECT_THROW(verify_chain_where(block, 1, drafts.data(), nullptr, 3, false, greedy, RowKey{}, 0, &a, &b),
               std::logic_error);
  EXPECT_THROW(rows_to_host(block, {3}), std::logic_error);
}

TEST(RowKernels, DeviceRowsThisBuildCannotReadAreRefusedClearly) {
  std::vector<float> storage;
  Logits block = host_block(storage, 2);
  const ProcessParams greedy{0.f, 0, 1.f, 1.f, 0};
  int32_t a = 0, b = 0;
  block.device_type = 7;  // some other accelerator
  try {
    verify_chain_where(block, 0, nullptr, nullptr, 0, false, greedy, RowKey{}, 0, &a, &b);
    FAIL() << "rows on an unknown device were read";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("host or CUDA"), std::string::npos) << e.what();
  }
#ifndef SAGUARO_WITH_CUDA
  block.device_type = Logits::kCuda;
  try {
    verify_chain_where(block, 0, nullptr, nullptr, 0, false, greedy, RowKey{}, 0, &a, &b);
    FAIL() << "CUDA rows were read as host memory";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("without its CUDA kernels"), std::string::npos) << e.what();
  }
#endif
}

}  // namespace
}  // namespace saguaro
