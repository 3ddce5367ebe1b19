#pragma once
#include <vector>

namespace saguaro {
// Pins the calling thread to these CPU cores (no-op when empty). Throws std::invalid_argument
// naming the cores when the OS refuses (e.g. a core that does not exist).
void pin_current_thread(const std::vector<int>& cores);
// Throws std::invalid_argument naming `what` and the core when one is not allowed for this process.
void check_cores(const std::vector<int>& cores, const char* what);
}  // namespace saguaro
