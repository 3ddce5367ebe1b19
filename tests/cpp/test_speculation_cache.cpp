#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "saguaro/speculation_cache.hpp"

using saguaro::CacheKey;
using saguaro::SpeculationCache;

namespace {

// Entry contents derived from (generation, key): a reader can check any returned entry is exactly the
// one published for what it asked, and not a mix of two entries.
int32_t n_tokens_for(const CacheKey& k, int32_t max_k) { return 1 + (k.bonus % max_k); }
int32_t token_for(uint64_t g, const CacheKey& k, int32_t i) {
  return static_cast<int32_t>((g * 1000003u + static_cast<uint64_t>(k.seq) * 7919u +
                               static_cast<uint64_t>(k.accepted) * 131u + static_cast<uint64_t>(k.bonus) * 17u +
                               static_cast<uint64_t>(i)) %
                              1000000007u);
}
float q_for(uint64_t g, const CacheKey& k, int32_t i, int64_t v) {
  return static_cast<float>(static_cast<uint32_t>(token_for(g, k, i)) % 9973u) + 0.25f * static_cast<float>(v);
}

struct Entry {
  std::vector<int32_t> tokens;
  std::vector<float> q;
};

Entry make_entry(uint64_t g, const CacheKey& k, int32_t max_k, int64_t vocab) {
  Entry e;
  const int32_t n = n_tokens_for(k, max_k);
  for (int32_t i = 0; i < n; ++i) {
    e.tokens.push_back(token_for(g, k, i));
    for (int64_t v = 0; v < vocab; ++v) e.q.push_back(q_for(g, k, i, v));
  }
  return e;
}

bool publish_entry(SpeculationCache& c, uint64_t g, const CacheKey& k) {
  Entry e = make_entry(g, k, c.max_k(), c.vocab());
  return c.publish(g, k, e.tokens.data(), static_cast<int32_t>(e.tokens.size()),
                   c.stores_q() ? e.q.data() : nullptr);
}

bool entry_matches(uint64_t g, const CacheKey& k, int32_t max_k, int64_t vocab, const std::vector<int32_t>& tokens,
                   const std::vector<float>& q) {
  Entry e = make_entry(g, k, max_k, vocab);
  return tokens == e.tokens && q == e.q;
}

}  // namespace

TEST(SpeculationCache, RejectsBadConstruction) {
  EXPECT_THROW(SpeculationCache(0, 4, 10, true), std::invalid_argument);
  EXPECT_THROW(SpeculationCache(4, 0, 10, true), std::invalid_argument);
  EXPECT_THROW(SpeculationCache(4, 4, 0, true), std::invalid_argument);
  EXPECT_THROW(SpeculationCache(SIZE_MAX / 2, 8, INT64_MAX / 2, true), std::invalid_argument);
}

TEST(SpeculationCache, ReportsItsShape) {
  SpeculationCache c(16, 4, 32, true);
  EXPECT_EQ(c.capacity(), 16u);
  EXPECT_EQ(c.max_k(), 4);
  EXPECT_EQ(c.vocab(), 32);
  EXPECT_TRUE(c.stores_q());
  EXPECT_EQ(c.occupied(), 0u);
}

TEST(SpeculationCache, PublishThenLookupRoundTrip) {
  SpeculationCache c(32, 4, 16, true);
  const CacheKey k{3, 2, 1234};
  ASSERT_TRUE(publish_entry(c, 5, k));
  std::vector<int32_t> tokens;
  std::vector<float> q;
  ASSERT_TRUE(c.lookup(5, k, &tokens, &q));
  EXPECT_TRUE(entry_matches(5, k, 4, 16, tokens, q));
  EXPECT_EQ(tokens.size(), static_cast<size_t>(n_tokens_for(k, 4)));
  EXPECT_EQ(q.size(), tokens.size() * 16);
  // q may be skipped.
  tokens.clear();
  ASSERT_TRUE(c.lookup(5, k, &tokens, nullptr));
  EXPECT_EQ(tokens.size(), static_cast<size_t>(n_tokens_for(k, 4)));
  EXPECT_EQ(c.occupied(), 1u);
}

TEST(SpeculationCache, MissesOtherKeysAndOtherGenerations) {
  SpeculationCache c(32, 4, 8, true);
  const CacheKey k{1, 0, 7};
  ASSERT_TRUE(publish_entry(c, 10, k));
  std::vector<int32_t> tokens;
  EXPECT_FALSE(c.lookup(9, k, &tokens, nullptr)) << "an older generation must never be returned";
  EXPECT_FALSE(c.lookup(11, k, &tokens, nullptr)) << "a newer generation must never be returned";
  EXPECT_FALSE(c.lookup(10, CacheKey{2, 0, 7}, &tokens, nullptr));
  EXPECT_FALSE(c.lookup(10, CacheKey{1, 1, 7}, &tokens, nullptr));
  EXPECT_FALSE(c.lookup(10, CacheKey{1, 0, 8}, &tokens, nullptr));
  EXPECT_TRUE(c.lookup(10, k, &tokens, nullptr));
}

TEST(SpeculationCache, SameKeyInTwoGenerationsAreDistinctEntries) {
  SpeculationCache c(32, 4, 8, true);
  const CacheKey k{1, 1, 2};
  ASSERT_TRUE(publish_entry(c, 4, k));
  ASSERT_TRUE(publish_entry(c, 5, k));
  std::vector<int32_t> t4, t5;
  std::vector<float> q4, q5;
  ASSERT_TRUE(c.lookup(4, k, &t4, &q4));
  ASSERT_TRUE(c.lookup(5, k, &t5, &q5));
  EXPECT_TRUE(entry_matches(4, k, 4, 8, t4, q4));
  EXPECT_TRUE(entry_matches(5, k, 4, 8, t5, q5));
  EXPECT_NE(t4, t5);
}

TEST(SpeculationCache, WithoutQRows) {
  SpeculationCache c(8, 3, 100000, false);
  const int32_t toks[3] = {5, 6, 7};
  ASSERT_TRUE(c.publish(1, CacheKey{0, 0, 0}, toks, 3, nullptr));
  std::vector<int32_t> tokens;
  std::vector<float> q = {1.f, 2.f};
  ASSERT_TRUE(c.lookup(1, CacheKey{0, 0, 0}, &tokens, &q));
  EXPECT_EQ(tokens, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_TRUE(q.empty()) << "q_rows is cleared when the cache stores no q";
  const float qq[3] = {0, 0, 0};
  EXPECT_THROW(c.publish(1, CacheKey{0, 0, 1}, toks, 1, qq), std::invalid_argument);
}

TEST(SpeculationCache, RejectsBadPublishArguments) {
  SpeculationCache c(8, 2, 4, true);
  const int32_t toks[3] = {1, 2, 3};
  const float q[12] = {};
  EXPECT_THROW(c.publish(1, CacheKey{0, 0, 0}, toks, 0, q), std::invalid_argument);
  EXPECT_THROW(c.publish(1, CacheKey{0, 0, 0}, toks, 3, q), std::invalid_argument);
  EXPECT_THROW(c.publish(1, CacheKey{0, 0, 0}, nullptr, 1, q), std::invalid_argument);
  EXPECT_THROW(c.publish(1, CacheKey{0, 0, 0}, toks, 1, nullptr), std::invalid_argument);
  EXPECT_EQ(c.occupied(), 0u);
}

TEST(SpeculationCache, FullCacheRefusesAndNeverOverwritesLiveEntries) {
  SpeculationCache c(8, 2, 4, true);
  std::vector<CacheKey> keys;
  for (int32_t b = 0; b < 8; ++b) keys.push_back(CacheKey{1, 0, b});
  for (const auto& k : keys) ASSERT_TRUE(publish_entry(c, 3, k));
  EXPECT_EQ(c.occupied(), 8u);
  EXPECT_FALSE(publish_entry(c, 3, CacheKey{1, 0, 100})) << "same generation: full";
  EXPECT_FALSE(publish_entry(c, 4, CacheKey{1, 0, 100})) << "next generation: previous one is still live";
  EXPECT_FALSE(publish_entry(c, 2, CacheKey{1, 0, 100})) << "an older writer never evicts newer entries";
  std::vector<int32_t> t;
  std::vector<float> q;
  for (const auto& k : keys) {
    ASSERT_TRUE(c.lookup(3, k, &t, &q));
    EXPECT_TRUE(entry_matches(3, k, 2, 4, t, q));
  }
}

TEST(SpeculationCache, ReclaimsGenerationsOlderThanPrevious) {
  SpeculationCache c(4, 2, 4, true);
  for (int32_t b = 0; b < 4; ++b) ASSERT_TRUE(publish_entry(c, 1, CacheKey{1, 0, b}));
  // Generation 3 may reclaim generation 1 (3 - 1 >= 2).
  for (int32_t b = 10; b < 14; ++b) ASSERT_TRUE(publish_entry(c, 3, CacheKey{1, 0, b}));
  std::vector<int32_t> t;
  std::vector<float> q;
  for (int32_t b = 0; b < 4; ++b) EXPECT_FALSE(c.lookup(1, CacheKey{1, 0, b}, &t, &q));
  for (int32_t b = 10; b < 14; ++b) {
    ASSERT_TRUE(c.lookup(3, CacheKey{1, 0, b}, &t, &q));
    EXPECT_TRUE(entry_matches(3, CacheKey{1, 0, b}, 2, 4, t, q));
  }
  // Generation 4 may not reclaim generation 3.
  EXPECT_FALSE(publish_entry(c, 4, CacheKey{1, 0, 50}));
  EXPECT_TRUE(publish_entry(c, 5, CacheKey{1, 0, 50}));
}

TEST(SpeculationCache, InvalidateSequenceHidesAndFreesItsEntries) {
  SpeculationCache c(4, 2, 4, true);
  ASSERT_TRUE(publish_entry(c, 7, CacheKey{1, 0, 0}));
  ASSERT_TRUE(publish_entry(c, 7, CacheKey{1, 1, 0}));
  ASSERT_TRUE(publish_entry(c, 7, CacheKey{2, 0, 0}));
  ASSERT_TRUE(publish_entry(c, 7, CacheKey{2, 1, 0}));
  c.invalidate_sequence(1);
  std::vector<int32_t> t;
  EXPECT_FALSE(c.lookup(7, CacheKey{1, 0, 0}, &t, nullptr));
  EXPECT_FALSE(c.lookup(7, CacheKey{1, 1, 0}, &t, nullptr));
  EXPECT_TRUE(c.lookup(7, CacheKey{2, 0, 0}, &t, nullptr));
  EXPECT_TRUE(c.lookup(7, CacheKey{2, 1, 0}, &t, nullptr));
  EXPECT_EQ(c.occupied(), 2u);
  // The invalidated slots are reclaimable even within the same generation.
  EXPECT_TRUE(publish_entry(c, 7, CacheKey{3, 0, 0}));
  EXPECT_TRUE(publish_entry(c, 7, CacheKey{3, 1, 0}));
  EXPECT_FALSE(publish_entry(c, 7, CacheKey{3, 2, 0}));
  EXPECT_TRUE(c.lookup(7, CacheKey{2, 1, 0}, &t, nullptr));
}

TEST(SpeculationCache, LargeVocabSlabIsUsableWithoutZeroing) {
  // Qwen's vocab: a slot is ~2.4 MB of q; only the slots written are ever touched.
  const int64_t vocab = 151936;
  SpeculationCache c(8, 4, vocab, true);
  std::vector<int32_t> toks = {1, 2, 3, 4};
  std::vector<float> q(static_cast<size_t>(4 * vocab));
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>(i % 1000) * 1e-3f;
  ASSERT_TRUE(c.publish(1, CacheKey{9, 4, 151935}, toks.data(), 4, q.data()));
  std::vector<int32_t> t;
  std::vector<float> qo;
  ASSERT_TRUE(c.lookup(1, CacheKey{9, 4, 151935}, &t, &qo));
  EXPECT_EQ(t, toks);
  EXPECT_EQ(qo, q);
}

// Several writers and readers over many generations on a small table, so slots are reclaimed while
// readers copy them. Every returned entry must be exactly the one published for (generation, key).
TEST(SpeculationCache, StressConcurrentWritersReadersGenerations) {
  constexpr int kWriters = 3;
  constexpr int kReaders = 3;
  constexpr uint64_t kGenerations = 150;
  constexpr int32_t kMaxK = 4;
  constexpr int64_t kVocab = 8;
  constexpr int kSeqPerWriter = 2;
  constexpr int kBonusPerSeq = 4;
  SpeculationCache c(48, kMaxK, kVocab, true);

  std::atomic<uint64_t> generation{1};
  std::atomic<int> arrived{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> published{0}, refused{0}, hits{0}, bad{0};

  auto writer = [&](int w) {
    for (uint64_t g = 1; g <= kGenerations; ++g) {
      while (generation.load(std::memory_order_acquire) < g) std::this_thread::yield();
      for (int s = 0; s < kSeqPerWriter; ++s) {
        for (int32_t a = 0; a < 2; ++a) {
          for (int32_t b = 0; b < kBonusPerSeq; ++b) {
            const CacheKey k{w * kSeqPerWriter + s, a, b + static_cast<int32_t>(g % 3)};
            if (publish_entry(c, g, k)) {
              ++published;
            } else {
              ++refused;
            }
          }
        }
      }
      if (w == 0 && g % 10 == 0) c.invalidate_sequence(static_cast<int64_t>(g % (kWriters * kSeqPerWriter)));
      // The last writer to finish generation g opens generation g + 1.
      if (arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == kWriters) {
        arrived.store(0, std::memory_order_relaxed);
        generation.store(g + 1, std::memory_order_release);
      }
    }
  };
  auto reader = [&](int r) {
    std::mt19937_64 rng(static_cast<uint64_t>(r) + 17);
    std::vector<int32_t> t;
    std::vector<float> q;
    while (!stop.load(std::memory_order_acquire)) {
      const uint64_t now = generation.load(std::memory_order_acquire);
      // Mostly the current and previous round, sometimes older rounds being reclaimed right now.
      const uint64_t back = rng() % 4;
      const uint64_t g = now > back ? now - back : 1;
      const CacheKey k{static_cast<int64_t>(rng() % (kWriters * kSeqPerWriter)), static_cast<int32_t>(rng() % 2),
                       static_cast<int32_t>(rng() % (kBonusPerSeq + 2))};
      if (c.lookup(g, k, &t, &q)) {
        ++hits;
        if (!entry_matches(g, k, kMaxK, kVocab, t, q)) ++bad;
      }
    }
  };

  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, r);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) writers.emplace_back(writer, w);
  for (auto& t : writers) t.join();
  stop.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  EXPECT_EQ(bad.load(), 0u) << "a reader got a torn entry or one of another generation/key";
  EXPECT_GT(hits.load(), 0u) << "the stress test exercised no hit";
  EXPECT_GT(published.load(), 0u);
  // 48 slots, 48 keys per generation, two live generations: refusals must have happened (reclaim path).
  EXPECT_GT(refused.load(), 0u);
}

// Same key hammered by writers of successive generations while readers look it up: the tightest race
// between a reclaiming writer and a copying reader.
TEST(SpeculationCache, StressSingleKeyReclaimRace) {
  constexpr int32_t kMaxK = 3;
  constexpr int64_t kVocab = 64;
  SpeculationCache c(2, kMaxK, kVocab, true);
  const CacheKey k{5, 1, 2};
  std::atomic<uint64_t> generation{1};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> hits{0}, bad{0};
  std::atomic<int> readers_running{0};
  // The writer starts once both readers run, and goes on past its 6000 generations until the readers
  // have hit 100 times (bounded: at most 2M generations). On a loaded machine the writer alone could
  // finish 6000 publishes before a reader is scheduled (CI: 0 hits in 5 ms).
  std::thread writer([&] {
    while (readers_running.load(std::memory_order_acquire) < 2) std::this_thread::yield();
    for (uint64_t g = 1; g <= 2000000 && (g <= 6000 || hits.load() < 100); ++g) {
      publish_entry(c, g, k);
      generation.store(g, std::memory_order_release);
    }
    stop.store(true, std::memory_order_release);
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      readers_running.fetch_add(1, std::memory_order_acq_rel);
      std::vector<int32_t> t;
      std::vector<float> q;
      uint64_t i = 0;
      while (!stop.load(std::memory_order_acquire)) {
        const uint64_t now = generation.load(std::memory_order_acquire);
        const uint64_t g = (++i + static_cast<uint64_t>(r)) % 2 == 0 || now < 2 ? now : now - 1;
        if (c.lookup(g, k, &t, &q)) {
          ++hits;
          if (!entry_matches(g, k, kMaxK, kVocab, t, q)) ++bad;
        }
      }
    });
  }
  writer.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(hits.load(), 0u);
}
