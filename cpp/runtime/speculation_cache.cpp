#include "saguaro/speculation_cache.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

namespace saguaro {
namespace {

// State word layout (one std::atomic<uint64_t> per slot):
//   bits 0-1   FREE / WRITING / READY
//   bit  2     invalidated (the entry is dead; the slot is reclaimable once unpinned)
//   bits 3-15  pin count (readers copying the entry right now)
//   bits 16-63 tag: hash of (generation, key), so a lookup skips foreign slots with one load
constexpr uint64_t kStateMask = 0x3;
constexpr uint64_t kFree = 0x0;
constexpr uint64_t kWriting = 0x1;
constexpr uint64_t kReady = 0x2;
constexpr uint64_t kDead = 0x4;
constexpr uint64_t kPinUnit = uint64_t{1} << 3;
constexpr uint64_t kPinMask = uint64_t{0x1FFF} << 3;
constexpr uint64_t kTagMask = ~uint64_t{0xFFFF};

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t key_hash(const CacheKey& key) {
  uint64_t h = mix64(static_cast<uint64_t>(key.seq));
  h = mix64(h ^ static_cast<uint32_t>(key.accepted));
  return mix64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(key.bonus)) << 32));
}

uint64_t tag_of(uint64_t generation, const CacheKey& key) {
  return mix64(key_hash(key) ^ mix64(generation ^ 0x5851F42D4C957F2Dull)) & kTagMask;
}

size_t round_up_64(size_t n) { return (n + 63) / 64 * 64; }

// a * b, or throws when it does not fit in size_t.
size_t checked_mul(size_t a, size_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) {
    throw std::invalid_argument(std::string("SpeculationCache: ") + what +
                                " overflows size_t; lower capacity, max_k or vocab");
  }
  return a * b;
}

}  // namespace

SpeculationCache::SpeculationCache(size_t capacity, int32_t max_k, int64_t vocab, bool store_q)
    : capacity_(capacity), max_k_(max_k), vocab_(vocab), store_q_(store_q) {
  if (capacity == 0) throw std::invalid_argument("SpeculationCache: capacity must be >= 1");
  if (max_k < 1) {
    throw std::invalid_argument("SpeculationCache: max_k must be >= 1, got " + std::to_string(max_k));
  }
  if (vocab < 1) {
    throw std::invalid_argument("SpeculationCache: vocab must be >= 1, got " + std::to_string(vocab));
  }
  const size_t token_bytes = round_up_64(static_cast<size_t>(max_k) * sizeof(int32_t));
  size_t q_bytes = 0;
  if (store_q) {
    q_bytes = checked_mul(checked_mul(static_cast<size_t>(max_k), static_cast<size_t>(vocab), "max_k * vocab"),
                          sizeof(float), "q row bytes");
    q_bytes = round_up_64(q_bytes);
  }
  q_offset_ = token_bytes;
  slot_bytes_ = token_bytes + q_bytes;
  const size_t total = checked_mul(slot_bytes_, capacity, "capacity * slot bytes");

  state_.reset(new std::atomic<uint64_t>[capacity]);
  for (size_t i = 0; i < capacity; ++i) state_[i].store(kFree, std::memory_order_relaxed);
  meta_.reset(new SlotMeta[capacity]);
  // Default-initialised, deliberately not zeroed: a slot's bytes are only read after a writer filled them.
  slab_.reset(new (std::nothrow) unsigned char[total]);
  if (!slab_) {
    throw std::runtime_error("SpeculationCache: could not allocate " + std::to_string(total) +
                             " bytes for the slab; lower capacity or max_k, or disable store_q");
  }
}

SpeculationCache::~SpeculationCache() = default;

size_t SpeculationCache::home_slot(const CacheKey& key) const { return key_hash(key) % capacity_; }

size_t SpeculationCache::window() const { return std::min(capacity_, kProbeWindow); }

int32_t* SpeculationCache::tokens_of(size_t i) const {
  return reinterpret_cast<int32_t*>(slab_.get() + i * slot_bytes_);
}

float* SpeculationCache::q_of(size_t i) const {
  return reinterpret_cast<float*>(slab_.get() + i * slot_bytes_ + q_offset_);
}

bool SpeculationCache::try_pin(size_t i, bool check_tag, uint64_t tag, uint64_t* pinned) const {
  uint64_t w = state_[i].load(std::memory_order_acquire);
  for (;;) {
    if ((w & kStateMask) != kReady || (w & kDead) != 0) return false;
    if (check_tag && (w & kTagMask) != tag) return false;
    if ((w & kPinMask) == kPinMask) return false;  // pin count saturated: report a miss
    // acquire: pairs with the writer's release store of READY, so the entry's bytes are visible.
    if (state_[i].compare_exchange_weak(w, w + kPinUnit, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
      *pinned = w + kPinUnit;
      return true;
    }
  }
}

void SpeculationCache::unpin(size_t i) const {
  // release: the copy made under the pin happens-before a later writer's claim of this slot.
  state_[i].fetch_sub(kPinUnit, std::memory_order_acq_rel);
}

bool SpeculationCache::try_claim(size_t i, uint64_t generation) {
  uint64_t w = state_[i].load(std::memory_order_acquire);
  const uint64_t state = w & kStateMask;
  if (state == kFree) {
    return state_[i].compare_exchange_strong(w, kWriting, std::memory_order_acq_rel, std::memory_order_acquire);
  }
  if (state != kReady || (w & kPinMask) != 0) return false;  // being written or being read: not ours
  // Pin first so the generation can be read without racing a concurrent reclaim.
  uint64_t pinned = w + kPinUnit;
  if (!state_[i].compare_exchange_strong(w, pinned, std::memory_order_acq_rel, std::memory_order_acquire)) {
    return false;
  }
  const SlotMeta& m = meta_[i];
  const bool reclaimable = (pinned & kDead) != 0 || m.generation + 1 < generation;
  if (reclaimable) {
    uint64_t expected = pinned;  // only our pin: nobody else is reading
    if (state_[i].compare_exchange_strong(expected, kWriting, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      return true;
    }
  }
  unpin(i);
  return false;
}

bool SpeculationCache::publish(uint64_t generation, const CacheKey& key, const int32_t* tokens,
                               int32_t n_tokens, const float* q_rows) {
  if (n_tokens < 1 || n_tokens > max_k_) {
    throw std::invalid_argument("SpeculationCache::publish: n_tokens must be in 1.." + std::to_string(max_k_) +
                                ", got " + std::to_string(n_tokens));
  }
  if (tokens == nullptr) throw std::invalid_argument("SpeculationCache::publish: tokens is null");
  if (store_q_ && q_rows == nullptr) {
    throw std::invalid_argument("SpeculationCache::publish: q_rows is null but the cache stores q rows");
  }
  if (!store_q_ && q_rows != nullptr) {
    throw std::invalid_argument(
        "SpeculationCache::publish: q_rows given but the cache was built with store_q = false");
  }
  const size_t home = home_slot(key);
  const size_t n_probe = window();
  for (size_t d = 0; d < n_probe; ++d) {
    const size_t i = (home + d) % capacity_;
    if (!try_claim(i, generation)) continue;
    SlotMeta& m = meta_[i];
    m.generation = generation;
    m.seq = key.seq;
    m.accepted = key.accepted;
    m.bonus = key.bonus;
    m.n_tokens = n_tokens;
    std::memcpy(tokens_of(i), tokens, static_cast<size_t>(n_tokens) * sizeof(int32_t));
    if (store_q_) {
      std::memcpy(q_of(i), q_rows, static_cast<size_t>(n_tokens) * static_cast<size_t>(vocab_) * sizeof(float));
    }
    // release: readers that see READY (acquire) see everything written above.
    state_[i].store(kReady | tag_of(generation, key), std::memory_order_release);
    return true;
  }
  return false;
}

bool SpeculationCache::lookup(uint64_t generation, const CacheKey& key, std::vector<int32_t>* tokens,
                              std::vector<float>* q_rows) const {
  const uint64_t tag = tag_of(generation, key);
  const size_t home = home_slot(key);
  const size_t n_probe = window();
  for (size_t d = 0; d < n_probe; ++d) {
    const size_t i = (home + d) % capacity_;
    uint64_t pinned = 0;
    if (!try_pin(i, /*check_tag=*/true, tag, &pinned)) continue;
    const SlotMeta& m = meta_[i];
    if (m.generation == generation && m.seq == key.seq && m.accepted == key.accepted && m.bonus == key.bonus) {
      const int32_t* src = tokens_of(i);
      if (tokens != nullptr) tokens->assign(src, src + m.n_tokens);
      if (q_rows != nullptr) {
        if (store_q_) {
          const float* q = q_of(i);
          q_rows->assign(q, q + static_cast<size_t>(m.n_tokens) * static_cast<size_t>(vocab_));
        } else {
          q_rows->clear();
        }
      }
      unpin(i);
      return true;
    }
    unpin(i);
  }
  return false;
}

void SpeculationCache::invalidate_sequence(int64_t seq) {
  for (size_t i = 0; i < capacity_; ++i) {
    uint64_t pinned = 0;
    if (!try_pin(i, /*check_tag=*/false, 0, &pinned)) continue;
    if (meta_[i].seq == seq) state_[i].fetch_or(kDead, std::memory_order_acq_rel);
    unpin(i);
  }
}

size_t SpeculationCache::occupied() const {
  size_t n = 0;
  for (size_t i = 0; i < capacity_; ++i) {
    const uint64_t w = state_[i].load(std::memory_order_acquire);
    if ((w & kStateMask) == kReady && (w & kDead) == 0) ++n;
  }
  return n;
}

}  // namespace saguaro
