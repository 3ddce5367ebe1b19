#pragma once
// Keyed randomness (docs/contracts.md §1): every random draw of saguaro is a pure function of
// (seed, stream, position, purpose), so the same seed gives the same tokens in any batch, on any
// thread, on the CPU or the GPU. Usable from .cpp and .cu translation units.
#include <cstdint>

#if defined(__CUDACC__)
#define SAGUARO_HD __host__ __device__
#else
#define SAGUARO_HD
#endif

namespace saguaro {

enum Purpose : uint32_t {
  kAccept = 1,      // ratio test of the draft token at that position
  kResidual = 2,    // the token drawn from the target at that position (residual, bonus, AR step)
  kDraft = 3,       // the draft's sample of the token at that position
  kFastBackup = 4,  // random fill of a fast-backup proposal
};

struct Philox4x32Out {
  uint32_t v[4];
};

// Philox4x32 with 10 rounds (Salmon et al., SC'11): round constants and key schedule of the paper.
SAGUARO_HD inline Philox4x32Out philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                              uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t prod0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t prod1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(prod0 >> 32), lo0 = static_cast<uint32_t>(prod0);
    const uint32_t hi1 = static_cast<uint32_t>(prod1 >> 32), lo1 = static_cast<uint32_t>(prod1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Philox4x32Out{{c0, c1, c2, c3}};
}

// u in [0, 1) with 53 random bits: key = (lo32(seed), hi32(seed)),
// counter = (lo32(position), hi32(position), purpose, lo32(stream)).
SAGUARO_HD inline double keyed_uniform(uint64_t seed, uint64_t stream, int64_t position, uint32_t purpose) {
  const uint64_t pos = static_cast<uint64_t>(position);
  const Philox4x32Out r = philox4x32_10(static_cast<uint32_t>(pos), static_cast<uint32_t>(pos >> 32), purpose,
                                        static_cast<uint32_t>(stream), static_cast<uint32_t>(seed),
                                        static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

}  // namespace saguaro
