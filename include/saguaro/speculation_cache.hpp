#pragma once
// The speculation cache (docs/algorithm.md §2): the draft publishes, for each predicted verification
// outcome (sequence, accepted k, bonus t), the next speculation (K tokens + the exact q rows they were
// sampled from); the target looks the actual outcome up when verification ends.
//
// Thread-safety contract
// ----------------------
// * publish(): any number of writer threads, concurrently with each other and with readers.
// * lookup(), occupied(): any number of reader threads, concurrently with writers.
// * invalidate_sequence(): any thread, concurrently with everything above.
// * No mutex anywhere: every slot has one 64-bit atomic state word (state, invalidated flag, pin
//   count, a tag of generation and key hash). A writer owns a slot exclusively while it is WRITING;
//   readers pin a READY slot (pin count + 1) before copying and unpin after, and a writer may only take
//   a READY slot over when nobody holds a pin. So a copy never overlaps a write: no torn entry, no data
//   race (ThreadSanitizer-clean), and no seqlock retry loop.
// * A reader that races a writer REPORTS A MISS: an entry whose slot is still being written is not
//   there yet. lookup() never blocks and never waits for a writer.
// * publish() never blocks either: it returns false when it finds no reclaimable slot in the key's probe
//   window (kProbeWindow slots, or the whole table when it is smaller).
//
// Generations
// -----------
// `generation` is the round an entry is for. lookup(g, key) only ever returns an entry published with
// exactly generation g. A writer publishing generation g may reclaim a slot that is FREE, invalidated,
// or holds generation h with h + 1 < g (the target may still be reading g - 1 while the draft writes g);
// it never overwrites a live entry of generation g - 1, g or newer. Generations should be one
// monotone round counter shared by all sequences; if the caller numbers rounds per sequence instead,
// entries of a sequence that is many rounds behind may be reclaimed early — that costs hit rate, never
// correctness (a reclaimed entry is a miss, never a wrong entry).
//
// Duplicate publishes of the same (generation, key) are allowed (two slots); lookup returns one of them.
// An invalidated sequence's entries are never returned again; entries published for it AFTER the
// invalidation are visible again (sequence ids are not expected to be reused).
//
// Memory: one slab of capacity × (max_k int32 tokens + max_k × vocab float32 q values), allocated once
// and never zeroed (an untouched q slab of hundreds of MB costs no page faults until written).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace saguaro {

struct CacheKey {
  int64_t seq;
  int32_t accepted;
  int32_t bonus;
};

class SpeculationCache {
 public:
  // Slots probed from a key's home slot, for publish and lookup alike.
  static constexpr size_t kProbeWindow = 64;

  // capacity entries, each up to max_k tokens and (if store_q) max_k * vocab float32 q values.
  // std::invalid_argument for capacity 0, max_k < 1, vocab < 1 or a slab size that overflows.
  SpeculationCache(size_t capacity, int32_t max_k, int64_t vocab, bool store_q);
  ~SpeculationCache();
  SpeculationCache(const SpeculationCache&) = delete;
  SpeculationCache& operator=(const SpeculationCache&) = delete;

  // Draft side, any number of writer threads. generation = the round the entry is for.
  // false when no free slot (entries of older generations are reclaimable) — never blocks.
  // std::invalid_argument for n_tokens outside 1..max_k, null tokens, q_rows null while stores_q(),
  // or q_rows given while !stores_q().
  bool publish(uint64_t generation, const CacheKey& key, const int32_t* tokens, int32_t n_tokens,
               const float* q_rows /* n_tokens * vocab, or null when !store_q */);

  // Target side: copies the entry out; false if absent, of another generation, or being written.
  // On success tokens holds n_tokens ids and (when q_rows is given) q_rows holds n_tokens * vocab
  // values, or is cleared when the cache does not store q.
  bool lookup(uint64_t generation, const CacheKey& key, std::vector<int32_t>* tokens,
              std::vector<float>* q_rows /* may be null */) const;

  // A finished/cancelled sequence's entries are never read again (and their slots become reclaimable).
  void invalidate_sequence(int64_t seq);

  size_t capacity() const { return capacity_; }
  int32_t max_k() const { return max_k_; }
  int64_t vocab() const { return vocab_; }
  bool stores_q() const { return store_q_; }

  // Added to the contract: a snapshot count of readable (published, not invalidated) entries, for
  // metrics and tests. Racy by nature while writers run.
  size_t occupied() const;

 private:
  // The per-slot metadata; written only by the slot's owning writer while it is WRITING, read only
  // under a pin, so plain fields are race-free.
  struct SlotMeta {
    uint64_t generation = 0;
    int64_t seq = 0;
    int32_t accepted = 0;
    int32_t bonus = 0;
    int32_t n_tokens = 0;
  };

  size_t home_slot(const CacheKey& key) const;
  size_t window() const;
  // Pins slot i when its state word is READY, not invalidated and (if tag_only) carries `tag`.
  // Returns false when the slot is not pinnable; on success *pinned holds the word after pinning.
  bool try_pin(size_t i, bool check_tag, uint64_t tag, uint64_t* pinned) const;
  void unpin(size_t i) const;
  // Tries to make slot i WRITING for a writer of `generation`; true on success.
  bool try_claim(size_t i, uint64_t generation);
  int32_t* tokens_of(size_t i) const;
  float* q_of(size_t i) const;

  size_t capacity_;
  int32_t max_k_;
  int64_t vocab_;
  bool store_q_;
  size_t slot_bytes_ = 0;       // bytes per slot in the slab (tokens then q), a multiple of 64
  size_t q_offset_ = 0;         // byte offset of the q rows inside a slot
  std::unique_ptr<std::atomic<uint64_t>[]> state_;
  std::unique_ptr<SlotMeta[]> meta_;
  std::unique_ptr<unsigned char[]> slab_;
};

}  // namespace saguaro
