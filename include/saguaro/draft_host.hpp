#pragma once
// The draft-server's engine room: one draft worker serving one remote target over a DraftWire.
// The link (saguaro.distributed) feeds it the target's frames and sends what it produces; close()
// (the target said stop, died, or the link dropped) stops the worker, which frees every sequence the
// target left in the draft model, so the server can take the next target with a clean model.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "saguaro/draft_worker.hpp"
#include "saguaro/model.hpp"
#include "saguaro/wire_transport.hpp"

namespace saguaro {

class DraftHost {
 public:
  DraftHost(std::shared_ptr<Model> draft, std::vector<int> cores, std::function<void()> thread_init);
  ~DraftHost();  // close()
  DraftHost(const DraftHost&) = delete;
  DraftHost& operator=(const DraftHost&) = delete;

  void deliver(std::string_view frame) { wire_.deliver(frame); }  // WireError on garbage
  bool next_frame(std::string& out, std::chrono::microseconds timeout) { return wire_.next_frame(out, timeout); }
  // Stops taking work, lets the worker finish what it holds, joins it (its sequences are released).
  void close();
  WireStats stats() const { return wire_.stats(); }

 private:
  std::shared_ptr<Model> draft_;
  DraftWire wire_;
  std::unique_ptr<DraftWorker> worker_;
};

}  // namespace saguaro
