#pragma once
// Small deterministic models for the runtime's C++ tests: the logits at a position are a pure
// function of the last two tokens (a hashed trigram table), like a language model whose KV cache
// is the token list. A "draft" is the same table perturbed (partial acceptance), identical
// (every draft accepted) or built from another seed (almost nothing accepted).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "saguaro/model.hpp"

namespace saguaro::testing {

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
inline double hash_unit(uint64_t seed, int64_t a, int64_t b, int64_t v) {
  const uint64_t h = mix(seed * 0x9E3779B97F4A7C15ULL ^ mix(static_cast<uint64_t>(a + 7) * 1000003ULL ^
                                                            mix(static_cast<uint64_t>(b + 11) * 7919ULL ^ static_cast<uint64_t>(v))));
  return static_cast<double>(h >> 11) / 9007199254740992.0;  // [0, 1)
}

struct ToyOptions {
  int64_t vocab = 24;
  int64_t max_context = 512;
  uint64_t seed = 1;
  double scale = 4.0;            // peakedness of the table
  uint64_t noise_seed = 0;       // 0: no perturbation
  double noise = 0.0;            // perturbation amplitude (draft ≈ target when small)
  std::vector<int32_t> eos;
};

class ToyModel : public Model {
 public:
  explicit ToyModel(ToyOptions o) : o_(std::move(o)) {}

  int64_t vocab_size() const override { return o_.vocab; }
  int64_t max_context() const override { return o_.max_context; }
  std::vector<int32_t> eos_token_ids() const override { return o_.eos; }

  // The reference: logits of the token after `ctx`.
  void logits_after(const std::vector<int32_t>& ctx, float* out) const {
    const int64_t a = ctx.size() >= 2 ? ctx[ctx.size() - 2] : -1;
    const int64_t b = ctx.empty() ? -2 : ctx.back();
    for (int64_t v = 0; v < o_.vocab; ++v) {
      double x = o_.scale * hash_unit(o_.seed, a, b, v);
      if (o_.noise_seed != 0) x += o_.noise * hash_unit(o_.noise_seed, a, b, v);
      out[v] = static_cast<float>(x);
    }
  }

  Logits prefill(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& prompts) override {
    before_call("prefill", ids);
    auto buf = std::make_shared<std::vector<float>>(ids.size() * o_.vocab);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (prompts[i].empty()) throw std::invalid_argument("toy prefill: empty prompt");
        if (static_cast<int64_t>(prompts[i].size()) > o_.max_context) throw std::invalid_argument("toy prefill: too long");
        if (kv_.count(ids[i])) throw std::invalid_argument("toy prefill: sequence exists");
        kv_[ids[i]] = prompts[i];
        logits_after(prompts[i], buf->data() + i * o_.vocab);
      }
    }
    after_call("prefill", ids, buf.get());
    return make(buf);
  }

  Logits extend(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& tokens) override {
    before_call("extend", ids);
    size_t total = 0;
    for (auto& t : tokens) total += t.size();
    auto buf = std::make_shared<std::vector<float>>(total * o_.vocab);
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t r = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        auto it = kv_.find(ids[i]);
        if (it == kv_.end()) throw std::invalid_argument("toy extend: unknown sequence " + std::to_string(ids[i]));
        if (tokens[i].empty()) throw std::invalid_argument("toy extend: empty token list");
        for (int32_t t : tokens[i]) {
          if (t < 0 || t >= o_.vocab) throw std::invalid_argument("toy extend: token out of range");
          it->second.push_back(t);
          if (static_cast<int64_t>(it->second.size()) > o_.max_context) throw std::invalid_argument("toy extend: context full");
          logits_after(it->second, buf->data() + (r++) * o_.vocab);
        }
      }
    }
    after_call("extend", ids, buf.get());
    return make(buf);
  }

  Logits tree_step(const std::vector<int64_t>& ids, const std::vector<int64_t>& visible,
                   const std::vector<int32_t>& tokens, int32_t depth) override {
    before_call("tree_step", ids);
    auto buf = std::make_shared<std::vector<float>>(ids.size() * o_.vocab);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (depth == 0) {
        scratch_.assign(ids.size(), {});
        scratch_ids_ = ids;
      } else if (scratch_ids_ != ids || depth != scratch_depth_ + 1) {
        throw std::logic_error("toy tree_step: rows or depth differ from the previous step");
      }
      scratch_depth_ = depth;
      for (size_t i = 0; i < ids.size(); ++i) {
        const auto& kv = kv_.at(ids[i]);
        if (visible[i] > static_cast<int64_t>(kv.size())) throw std::logic_error("toy tree_step: visible > KV length");
        if (visible[i] + depth >= o_.max_context) throw std::invalid_argument("toy tree_step: position past max_context");
        if (depth == 0) scratch_[i].assign(kv.begin(), kv.begin() + visible[i]);
        scratch_[i].push_back(tokens[i]);
        logits_after(scratch_[i], buf->data() + i * o_.vocab);
      }
    }
    after_call("tree_step", ids, buf.get());
    return make(buf);
  }

  void truncate(int64_t id, int64_t length) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& kv = kv_.at(id);
    if (length < static_cast<int64_t>(kv.size())) kv.resize(length);
  }
  int64_t length(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(kv_.at(id).size());
  }
  void release(int64_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (kv_.erase(id) == 0) throw std::invalid_argument("toy release: unknown sequence");
    ++released_;
  }

  int64_t live_sequences() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(kv_.size());
  }
  int64_t released() const {
    std::lock_guard<std::mutex> lock(mu_);
    return released_;
  }
  std::atomic<int64_t> calls{0};

 protected:
  virtual void before_call(const char* what, const std::vector<int64_t>& ids) {
    (void)what;
    (void)ids;
    ++calls;
  }
  virtual void after_call(const char* what, const std::vector<int64_t>& ids, std::vector<float>* logits) {
    (void)what;
    (void)ids;
    (void)logits;
  }
  Logits make(const std::shared_ptr<std::vector<float>>& buf) const {
    Logits l;
    l.data = buf->data();
    l.vocab = o_.vocab;
    l.rows = static_cast<int64_t>(buf->size()) / o_.vocab;
    l.owner = buf;
    return l;
  }

  ToyOptions o_;
  mutable std::mutex mu_;
  std::map<int64_t, std::vector<int32_t>> kv_;
  std::vector<std::vector<int32_t>> scratch_;
  std::vector<int64_t> scratch_ids_;
  int32_t scratch_depth_ = -1;
  int64_t released_ = 0;
};

// Throws from its n-th call on (a draft worker failing mid-run).
class ThrowingModel : public ToyModel {
 public:
  ThrowingModel(ToyOptions o, int64_t fail_from_call) : ToyModel(std::move(o)), fail_from_(fail_from_call) {}

 protected:
  void before_call(const char* what, const std::vector<int64_t>& ids) override {
    ToyModel::before_call(what, ids);
    if (calls.load() >= fail_from_) throw std::runtime_error(std::string("injected failure in ") + what);
  }
  int64_t fail_from_;
};

// Produces NaN logits for one sequence once its KV holds from_length tokens; other rows are clean.
// The sequence is named by the order of prefills (1 = the first sequence prefilled): request ids are
// unique in the process, so a test cannot know them before it submits.
class NanModel : public ToyModel {
 public:
  NanModel(ToyOptions o, int64_t poisoned_ordinal, int64_t from_length)
      : ToyModel(std::move(o)), ordinal_(poisoned_ordinal), from_(from_length) {}

  Logits prefill(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& prompts) override {
    Logits l = ToyModel::prefill(ids, prompts);
    std::lock_guard<std::mutex> lock(order_mu_);
    for (int64_t id : ids)
      if (++prefilled_ == ordinal_) seq_ = id;
    return l;
  }

  Logits extend(const std::vector<int64_t>& ids, const std::vector<std::vector<int32_t>>& tokens) override {
    Logits l = ToyModel::extend(ids, tokens);
    auto buf = std::const_pointer_cast<std::vector<float>>(std::static_pointer_cast<const std::vector<float>>(l.owner));
    int64_t seq;
    {
      std::lock_guard<std::mutex> lock(order_mu_);
      seq = seq_;
    }
    size_t r = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      const bool poisoned = ids[i] == seq && length(ids[i]) >= from_;
      for (size_t j = 0; j < tokens[i].size(); ++j, ++r)
        if (poisoned)
          std::fill(buf->begin() + r * o_.vocab, buf->begin() + (r + 1) * o_.vocab, std::numeric_limits<float>::quiet_NaN());
    }
    return l;
  }

 private:
  std::mutex order_mu_;
  int64_t ordinal_, from_;
  int64_t prefilled_ = 0;
  int64_t seq_ = -1;
};

// Shows the draft's tree overlapping verification: a target built with wait_for_tree blocks inside
// extend until the draft has called tree_step since the target's previous wait ended (bounded), then
// consumes that sighting. A step that came before this extend began counts: the draft starts a
// round's tree when the speculation is sent, and under sanitizers its first steps may run before the
// target thread gets into extend. A runtime that serialises the two lets the first wait time out.
struct CallLog {
  std::mutex mu;
  std::condition_variable cv;
  bool tree_step_seen = false;
  int64_t target_extends_overlapping_tree = 0;
  int64_t target_extends = 0;
  int64_t waits_left = 5;  // only the first rounds wait (the last round has no tree to wait for)
  // The same for prefills: a target prefill waits (bounded) for the draft's prefill to begin.
  bool draft_prefill_seen = false;
  int64_t prefill_waits_left = 0;
  int64_t target_prefills_overlapping_draft = 0;
};

class InstrumentedModel : public ToyModel {
 public:
  InstrumentedModel(ToyOptions o, std::shared_ptr<CallLog> log, bool is_target)
      : ToyModel(std::move(o)), log_(std::move(log)), target_(is_target) {}

 protected:
  void before_call(const char* what, const std::vector<int64_t>& ids) override {
    ToyModel::before_call(what, ids);
    const std::string w(what);
    if (!target_ && w == "tree_step") {
      std::lock_guard<std::mutex> lock(log_->mu);
      log_->tree_step_seen = true;
      log_->cv.notify_all();
    }
    if (!target_ && w == "prefill") {
      std::lock_guard<std::mutex> lock(log_->mu);
      log_->draft_prefill_seen = true;
      log_->cv.notify_all();
    }
    if (target_ && w == "prefill") {
      std::unique_lock<std::mutex> lock(log_->mu);
      if (log_->prefill_waits_left > 0) {
        --log_->prefill_waits_left;
        if (log_->cv.wait_for(lock, std::chrono::seconds(3), [&] { return log_->draft_prefill_seen; }))
          ++log_->target_prefills_overlapping_draft;
        log_->draft_prefill_seen = false;
      }
    }
    if (target_ && w == "extend") {
      std::unique_lock<std::mutex> lock(log_->mu);
      if (log_->waits_left == 0) return;
      --log_->waits_left;
      ++log_->target_extends;
      if (log_->cv.wait_for(lock, std::chrono::seconds(3), [&] { return log_->tree_step_seen; }))
        ++log_->target_extends_overlapping_tree;
      log_->tree_step_seen = false;
    }
  }
  std::shared_ptr<CallLog> log_;
  bool target_;
};

}  // namespace saguaro::testing
