#include "saguaro/runtime.hpp"

#include <atomic>
#include <stdexcept>
#include <string>

#include "saguaro/draft_worker.hpp"
#include "saguaro/request_inbox.hpp"
#include "saguaro/target_worker.hpp"
#include "saguaro/transport.hpp"
#include "saguaro/update_board.hpp"

namespace saguaro {

namespace {

// Request ids double as the models' sequence ids, so they are unique in the process, not per runtime:
// runtimes sharing a loaded model (engines over one pair of weights) must never name the same KV
// slot. A per-runtime counter let one runtime's asynchronous release of its sequence 5 free another
// runtime's live sequence 5 in the shared draft.
int64_t next_request_id() {
  static std::atomic<int64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

struct Runtime::Impl {
  std::shared_ptr<Model> target;
  std::shared_ptr<Model> draft;
  RuntimeConfig config;
  int64_t vocab = 0;
  RequestInbox inbox;
  UpdateBoard board;
  std::shared_ptr<DraftTransport> transport;  // in-process, or a TargetWire the caller's link also holds
  std::unique_ptr<DraftWorker> draft_worker;
  std::unique_ptr<TargetWorker> target_worker;
  std::mutex close_mu;
  bool closed = false;
};

namespace {
void check_draft_vocab(const Model& target, int64_t draft_vocab) {
  if (draft_vocab != target.vocab_size())
    throw std::invalid_argument("target and draft vocabularies differ (" + std::to_string(target.vocab_size()) +
                                " vs " + std::to_string(draft_vocab) + "): they must share one tokenizer");
}
}  // namespace

Runtime::Runtime(std::shared_ptr<Model> target, std::shared_ptr<Model> draft, RuntimeConfig config)
    : impl_(std::make_unique<Impl>()) {
  if (!target) throw std::invalid_argument("a target model is required");
  validate(config);
  if (config.mode != Mode::kAr) {
    if (!draft) throw std::invalid_argument(std::string("mode \"") + mode_name(config.mode) + "\" needs a draft model");
    check_draft_vocab(*target, draft->vocab_size());
  }
  impl_->target = std::move(target);
  impl_->draft = config.mode == Mode::kAr ? nullptr : std::move(draft);
  impl_->config = std::move(config);
  impl_->vocab = impl_->target->vocab_size();
  const int64_t draft_context = impl_->draft ? impl_->draft->max_context() : impl_->target->max_context();
  std::function<bool()> draft_idle;
  if (impl_->draft) {
    auto transport = std::make_shared<InProcessTransport<ToDraft, ToTarget>>(64);
    impl_->transport = transport;
    impl_->draft_worker = std::make_unique<DraftWorker>(impl_->draft, *impl_->transport, impl_->config.draft_cores,
                                                        impl_->config.draft_thread_init);
    // Read on the target worker, the only sender: the draft has handled everything sent to it.
    const DraftWorker* worker = impl_->draft_worker.get();
    draft_idle = [transport = transport.get(), worker] {
      return worker->messages_handled() == transport->sent_to_draft();
    };
  }
  start(draft_context, std::move(draft_idle));
}

Runtime::Runtime(std::shared_ptr<Model> target, std::shared_ptr<TargetWire> wire, int64_t draft_vocab,
                 int64_t draft_max_context, RuntimeConfig config)
    : impl_(std::make_unique<Impl>()) {
  if (!target) throw std::invalid_argument("a target model is required");
  if (!wire) throw std::invalid_argument("a remote draft needs its wire");
  validate(config);
  if (config.mode == Mode::kAr)
    throw std::invalid_argument("mode \"ar\" runs no draft: do not connect one (or use mode \"sd\" / \"ssd\")");
  check_draft_vocab(*target, draft_vocab);
  if (draft_max_context < 1) throw std::invalid_argument("the remote draft announced no context length");
  impl_->target = std::move(target);
  impl_->config = std::move(config);
  impl_->vocab = impl_->target->vocab_size();
  impl_->transport = std::move(wire);
  start(draft_max_context, {});  // a remote draft's threads are not this process's to lend
}

void Runtime::start(int64_t draft_context, std::function<bool()> draft_idle) {
  impl_->target_worker = std::make_unique<TargetWorker>(impl_->target, impl_->config, draft_context, impl_->inbox,
                                                        impl_->board, impl_->transport.get(), std::move(draft_idle));
  if (impl_->draft_worker) impl_->draft_worker->start();
  impl_->target_worker->start();
}

Runtime::~Runtime() { close(); }

int64_t Runtime::submit(std::vector<int32_t> prompt, RequestParams params) {
  if (prompt.empty()) throw std::invalid_argument("prompt must contain at least one token");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= impl_->vocab)
      throw std::invalid_argument("prompt token " + std::to_string(prompt[i]) + " at index " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(impl_->vocab) + ")");
  validate(params);
  const int64_t id = next_request_id();
  impl_->board.open(id);  // before the target can see it, so no update is lost
  impl_->inbox.submit(id, std::move(prompt), std::move(params));
  return id;
}

RequestUpdate Runtime::poll(int64_t request_id, std::optional<double> timeout_s) {
  std::optional<std::chrono::microseconds> timeout;
  if (timeout_s) {
    if (!(*timeout_s >= 0)) throw std::invalid_argument("timeout must be >= 0 seconds (or None to wait)");
    timeout = std::chrono::microseconds(static_cast<int64_t>(*timeout_s * 1e6));
  }
  return impl_->board.poll(request_id, timeout);
}

void Runtime::cancel(int64_t request_id) { impl_->inbox.cancel(request_id); }

const RuntimeConfig& Runtime::config() const { return impl_->config; }

RuntimeMetrics Runtime::metrics() const { return impl_->target_worker->metrics(); }

void Runtime::set_update_callback(UpdateListener listener) { impl_->board.set_listener(std::move(listener)); }

void Runtime::close() {
  std::lock_guard<std::mutex> lock(impl_->close_mu);
  if (impl_->closed) return;
  impl_->closed = true;
  impl_->inbox.close();
  impl_->target_worker->join();  // finishes requests in flight as cancelled, stops the draft
  if (impl_->transport) impl_->transport->close();
  if (impl_->draft_worker) impl_->draft_worker->join();
}

}  // namespace saguaro
