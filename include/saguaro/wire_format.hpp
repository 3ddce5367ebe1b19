#pragma once
// The bytes a draft in another process exchanges with its target (docs/algorithm.md §2: what crosses
// is the outcome key, sequence lengths, tokens, sampling settings, hit flags, speculated tokens, and
// q rows only for sampled rows and only for the speculation used (remote_q.hpp); never KV). One frame per message:
//
//   u32 magic "SGWR" | u16 kWireVersion | u8 kind (1 ToDraft, 2 ToTarget) | body
//
// Integers and floats are written in the host's byte order (little-endian on every platform the
// package builds for), vectors as u64 length + elements. Timestamps do not cross: a steady clock is
// per host, so a ToTarget carries its duration and the receiving end places it on its own clock.
// decode_* throws WireError on a frame that is truncated, oversized, of another version or kind.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "saguaro/draft_messages.hpp"

namespace saguaro {

// 2: sampled entries' q rows stay with the draft until the target asks for the one it uses.
inline constexpr uint16_t kWireVersion = 2;

class WireError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string encode(const ToDraft& msg);    // the cache handles do not cross (entries come back in kTreeDone)
std::string encode(const ToTarget& msg);
ToDraft decode_to_draft(std::string_view frame);
// started/ended are placed on this host's clock: ended = now, started = now - the draft's duration.
ToTarget decode_to_target(std::string_view frame);

}  // namespace saguaro
