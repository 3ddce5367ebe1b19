#include "saguaro/speculation.hpp"

namespace saguaro {

void Speculation::truncate(int32_t n, int64_t vocab) {
  if (n >= size()) return;
  tokens.resize(n);
  if (!q.empty()) q.resize(static_cast<size_t>(n) * vocab);
}

}  // namespace saguaro
