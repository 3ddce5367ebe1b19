#include "saguaro/wire_transport.hpp"

#include <stdexcept>
#include <utility>

#include "saguaro/wire_format.hpp"

namespace saguaro {

// ---- TargetWire ----

void TargetWire::send_to_draft(ToDraft msg) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return;  // nobody is there; the target worker has its kError (or will)
    if (msg.kind == ToDraft::Kind::kSpeculate) {
      cache_ = msg.cache;
      q_cache_ = msg.q_cache;
      // The held entries' tokens, as many as the sampled rows' cache holds (tokens only: small).
      if (q_cache_ && (!held_ || held_->capacity() < q_cache_->capacity()))
        held_ = std::make_shared<SpeculationCache>(q_cache_->capacity(), q_cache_->max_k(), q_cache_->vocab(), false);
    }
  }
  msg.cache.reset();  // the remote draft returns its entries in kTreeDone instead
  msg.q_cache.reset();
  std::string frame = encode(msg);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.frames_out;
    stats_.bytes_out += static_cast<int64_t>(frame.size());
  }
  out_.push(std::move(frame));
}

bool TargetWire::receive_at_target(ToTarget& out, std::chrono::microseconds timeout) {
  if (!in_.pop(out, timeout)) return false;
  if (out.kind == ToTarget::Kind::kError) failure_seen_.store(true, std::memory_order_release);
  return true;
}

void TargetWire::send_to_target(ToTarget) { throw std::logic_error("TargetWire: the draft end is remote"); }
bool TargetWire::receive_at_draft(ToDraft&, std::chrono::microseconds) {
  throw std::logic_error("TargetWire: the draft end is remote");
}

void TargetWire::close() {
  out_.close();
  in_.close();
  decltype(asked_) unanswered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unanswered.swap(asked_);
  }
  for (auto& [key, q] : unanswered) q->fail();
}

bool TargetWire::closed() const { return in_.closed(); }

bool TargetWire::next_frame(std::string& out, std::chrono::microseconds timeout) { return out_.pop(out, timeout); }

bool TargetWire::lookup_remote(uint64_t generation, const CacheKey& key, std::vector<int32_t>* tokens,
                               std::shared_ptr<RemoteQ>* q) {
  std::shared_ptr<SpeculationCache> held;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return false;
    held = held_;
  }
  if (!held || !held->lookup(generation, key, tokens, nullptr)) return false;
  ToDraft request;
  request.kind = ToDraft::Kind::kQRequest;
  request.round = generation;
  request.q_key = key;
  std::string frame = encode(request);
  auto answer = std::make_shared<RemoteQ>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return false;
    asked_[{generation, key.seq, key.accepted, key.bonus}] = answer;
    ++stats_.q_requests;
    ++stats_.frames_out;
    stats_.bytes_out += static_cast<int64_t>(frame.size());
  }
  out_.push(std::move(frame));
  *q = std::move(answer);
  return true;
}

void TargetWire::deliver(std::string_view frame) {
  ToTarget msg = decode_to_target(frame);
  std::shared_ptr<SpeculationCache> cache, q_cache, held;
  std::shared_ptr<RemoteQ> answered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return;  // a late frame of a link already declared dead
    ++stats_.frames_in;
    stats_.bytes_in += static_cast<int64_t>(frame.size());
    if (msg.kind == ToTarget::Kind::kQRows) {
      if (msg.entries.size() != 1) throw WireError("wire frame: a q-rows answer carries one entry");
      const CacheKey& k = msg.entries[0].key;
      const auto it = asked_.find({msg.round, k.seq, k.accepted, k.bonus});
      if (it == asked_.end()) return;  // not asked for in this epoch
      answered = std::move(it->second);
      asked_.erase(it);
      if (!msg.entries[0].q.empty()) ++stats_.q_answered;
      stats_.q_bytes += static_cast<int64_t>(frame.size());
    } else {
      stats_.entries_in += static_cast<int64_t>(msg.entries.size());
      cache = cache_;
      q_cache = q_cache_;
      held = held_;
    }
  }
  if (answered) {
    // The target checks the row count against its speculation before it verifies.
    answered->fulfil(std::move(msg.entries[0].q));
    return;
  }
  // Publish before the kTreeDone is queued: the target reads the cache once it has read kTreeDone.
  msg.published = 0;
  msg.publish_failures = 0;
  for (const CacheEntry& e : msg.entries) {
    SpeculationCache* c = e.q_held ? held.get() : e.store_q ? q_cache.get() : cache.get();
    const bool with_q = e.store_q && !e.q_held;
    if (c == nullptr || e.tokens.empty() ||
        (with_q && e.q.size() != e.tokens.size() * static_cast<size_t>(c->vocab()))) {
      ++msg.publish_failures;  // a tree for a round whose caches this end never saw, or malformed
      continue;
    }
    const bool ok = c->publish(msg.round + 1, e.key, e.tokens.data(), static_cast<int32_t>(e.tokens.size()),
                               with_q ? e.q.data() : nullptr);
    ++(ok ? msg.published : msg.publish_failures);
  }
  msg.entries.clear();
  in_.push(std::move(msg));
}

void TargetWire::fail(const std::string& reason) {
  decltype(asked_) unanswered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return;
    down_ = true;
    ++stats_.failures;
    failure_seen_.store(false, std::memory_order_release);
    unanswered.swap(asked_);
  }
  for (auto& [key, q] : unanswered) q->fail();  // the target verifies those as deterministic proposals
  out_.clear();  // frames for a draft that will never read them
  ToTarget err;
  err.kind = ToTarget::Kind::kError;
  err.error = reason;
  err.started = err.ended = std::chrono::steady_clock::now();
  in_.push(std::move(err));
}

void TargetWire::reconnected() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!down_ || !failure_seen_.load(std::memory_order_acquire))
    throw std::logic_error("TargetWire::reconnected: the link is not down, or the target has not taken its failure yet");
  down_ = false;
  cache_.reset();
  q_cache_.reset();
  held_.reset();
  out_.clear();
  epoch_.fetch_add(1, std::memory_order_acq_rel);
}

bool TargetWire::down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return down_;
}

WireStats TargetWire::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  WireStats s = stats_;
  s.epoch = epoch();
  return s;
}

// ---- DraftWire ----

void DraftWire::send_to_target(ToTarget msg) {
  if (msg.kind == ToTarget::Kind::kTreeDone) {
    // Keep the sampled entries' q rows here; the target asks for the one it uses (remote_q.hpp).
    // Entries are for generation round + 1; the target looks each generation up once, right after
    // the round it was built during, so two generations are all that can still be asked for.
    const uint64_t generation = msg.round + 1;
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = held_.begin(); it != held_.end() && std::get<0>(it->first) + 1 < generation;) it = held_.erase(it);
    for (CacheEntry& e : msg.entries) {
      if (!e.store_q || e.q.empty()) continue;
      held_[{generation, e.key.seq, e.key.accepted, e.key.bonus}] = std::move(e.q);
      e.q.clear();
      e.q_held = true;
      ++stats_.q_held;
    }
  }
  std::string frame = encode(msg);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.frames_out;
    stats_.bytes_out += static_cast<int64_t>(frame.size());
  }
  out_.push(std::move(frame));
}

void DraftWire::answer_q(const ToDraft& request) {
  ToTarget answer;
  answer.kind = ToTarget::Kind::kQRows;
  answer.round = request.round;
  CacheEntry entry;
  entry.key = request.q_key;
  entry.store_q = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = held_.find({request.round, request.q_key.seq, request.q_key.accepted, request.q_key.bonus});
    if (it != held_.end()) {  // else an empty answer: the target verifies that speculation as deterministic
      entry.q = std::move(it->second);
      held_.erase(it);
    }
    ++stats_.q_requests;
    if (!entry.q.empty()) ++stats_.q_answered;
  }
  answer.entries.push_back(std::move(entry));
  answer.started = answer.ended = std::chrono::steady_clock::now();
  std::string frame = encode(answer);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.frames_out;
    stats_.bytes_out += static_cast<int64_t>(frame.size());
    stats_.q_bytes += static_cast<int64_t>(frame.size());
  }
  out_.push(std::move(frame));
}

bool DraftWire::receive_at_draft(ToDraft& out, std::chrono::microseconds timeout) { return in_.pop(out, timeout); }

void DraftWire::send_to_draft(ToDraft) { throw std::logic_error("DraftWire: the target end is remote"); }
bool DraftWire::receive_at_target(ToTarget&, std::chrono::microseconds) {
  throw std::logic_error("DraftWire: the target end is remote");
}

void DraftWire::close() {
  out_.close();
  in_.close();
}

bool DraftWire::closed() const { return in_.closed(); }

bool DraftWire::next_frame(std::string& out, std::chrono::microseconds timeout) { return out_.pop(out, timeout); }

void DraftWire::deliver(std::string_view frame) {
  ToDraft msg = decode_to_draft(frame);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.frames_in;
    stats_.bytes_in += static_cast<int64_t>(frame.size());
  }
  // Answered here, on the link's receiving thread: the draft worker is busy with the next tree.
  if (msg.kind == ToDraft::Kind::kQRequest) return answer_q(msg);
  in_.push(std::move(msg));
}

WireStats DraftWire::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace saguaro
