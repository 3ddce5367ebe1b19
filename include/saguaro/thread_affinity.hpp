#pragma once
#include <vector>

namespace saguaro {
// Pins the calling thread to these CPU cores (no-op when empty). Throws std::invalid_argument
// naming the cores when the OS refuses (e.g. a core that does not exist).
void pin_current_thread(const std::vector<int>& cores);
}  // namespace saguaro
