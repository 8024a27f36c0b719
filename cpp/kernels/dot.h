// Portable dot-product micro-kernels for the scalar path: one weight row against up to
// kMaxTokens activation rows at once, so each weight element is loaded once per tile.
//
// Every token's sum is accumulated in the same order (kLanes partial sums, then a fixed
// reduction) whatever the tile width, so a token's result does not depend on the other
// tokens in the batch nor on how work was split across threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moe {
namespace dot {

// Partial sums per token: wide enough for the compiler to keep two SSE/NEON vectors busy.
constexpr size_t kLanes = 8;
// Tokens per tile: 4 x 8 partial sums fit the 16 SSE/NEON registers with the loaded weights.
constexpr size_t kMaxTokens = 4;

inline float load(float w) { return w; }
inline float load(uint16_t w) {
  uint32_t bits = static_cast<uint32_t>(w) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float reduce(const float* lanes) {
  float a = (lanes[0] + lanes[4]) + (lanes[1] + lanes[5]);
  float b = (lanes[2] + lanes[6]) + (lanes[3] + lanes[7]);
  return a + b;
}

// out[t] = sum_i w[i] * x[t][i] for t < NT.
template <size_t NT, typename W>
inline void row_times_tokens(const W* w, const float* const* x, size_t n, float* out) {
  float acc[NT][kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    float wv[kLanes];
    for (size_t l = 0; l < kLanes; ++l) wv[l] = load(w[i + l]);
    for (size_t t = 0; t < NT; ++t) {
      for (size_t l = 0; l < kLanes; ++l) acc[t][l] += wv[l] * x[t][i + l];
    }
  }
  for (size_t l = 0; i + l < n; ++l) {
    float wv = load(w[i + l]);
    for (size_t t = 0; t < NT; ++t) acc[t][l] += wv * x[t][i + l];
  }
  for (size_t t = 0; t < NT; ++t) out[t] = reduce(acc[t]);
}

// out[t] = sum_i w[i] * x[t][i] for any token count, in tiles of kMaxTokens.
template <typename W>
inline void row_times_token_list(const W* w, const float* const* x, size_t tokens, size_t n,
                                 float* out) {
  size_t t = 0;
  for (; t + kMaxTokens <= tokens; t += kMaxTokens) row_times_tokens<kMaxTokens>(w, x + t, n, out + t);
  switch (tokens - t) {
    case 3: row_times_tokens<3>(w, x + t, n, out + t); break;
    case 2: row_times_tokens<2>(w, x + t, n, out + t); break;
    case 1: row_times_tokens<1>(w, x + t, n, out + t); break;
    default: break;
  }
}

}  // namespace dot
}  // namespace moe
