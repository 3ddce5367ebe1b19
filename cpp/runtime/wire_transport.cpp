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
}

bool TargetWire::closed() const { return in_.closed(); }

bool TargetWire::next_frame(std::string& out, std::chrono::microseconds timeout) { return out_.pop(out, timeout); }

void TargetWire::deliver(std::string_view frame) {
  ToTarget msg = decode_to_target(frame);
  std::shared_ptr<SpeculationCache> cache, q_cache;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return;  // a late frame of a link already declared dead
    ++stats_.frames_in;
    stats_.bytes_in += static_cast<int64_t>(frame.size());
    stats_.entries_in += static_cast<int64_t>(msg.entries.size());
    cache = cache_;
    q_cache = q_cache_;
  }
  // Publish before the kTreeDone is queued: the target reads the cache once it has read kTreeDone.
  msg.published = 0;
  msg.publish_failures = 0;
  for (const CacheEntry& e : msg.entries) {
    SpeculationCache* c = e.store_q ? q_cache.get() : cache.get();
    if (c == nullptr || e.tokens.empty() ||
        (e.store_q && e.q.size() != e.tokens.size() * static_cast<size_t>(c->vocab()))) {
      ++msg.publish_failures;  // a tree for a round whose caches this end never saw, or malformed
      continue;
    }
    const bool ok = c->publish(msg.round + 1, e.key, e.tokens.data(), static_cast<int32_t>(e.tokens.size()),
                               e.store_q ? e.q.data() : nullptr);
    ++(ok ? msg.published : msg.publish_failures);
  }
  msg.entries.clear();
  in_.push(std::move(msg));
}

void TargetWire::fail(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (down_) return;
    down_ = true;
    ++stats_.failures;
    failure_seen_.store(false, std::memory_order_release);
  }
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
  std::string frame = encode(msg);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.frames_out;
    stats_.bytes_out += static_cast<int64_t>(frame.size());
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
  in_.push(std::move(msg));
}

WireStats DraftWire::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace saguaro
