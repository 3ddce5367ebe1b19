#include "saguaro/draft_host.hpp"

namespace saguaro {

DraftHost::DraftHost(std::shared_ptr<Model> draft, std::vector<int> cores, std::function<void()> thread_init)
    : draft_(std::move(draft)) {
  worker_ = std::make_unique<DraftWorker>(draft_, wire_, std::move(cores), std::move(thread_init));
  worker_->start();
}

DraftHost::~DraftHost() { close(); }

void DraftHost::close() {
  wire_.close();
  if (worker_) worker_->join();
}

}  // namespace saguaro
