// Scalar kernels: the reference every SIMD path is tested against, and the fallback on any
// CPU. Plain C++ the compiler may auto-vectorise for the baseline ISA (SSE2, armv8-a NEON).
#include <cstring>

#include "kernel_table.h"

namespace moe {
namespace isa {

namespace {

// Partial sums per (row, token), summed in a fixed tree at the end.
constexpr size_t kLanes = 8;

inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Tokens per pass over a weight row: each weight element is loaded once for all of them.
constexpr size_t kTokensPerPass = 4;

// NT tokens against one packed row (stride kPanelRows * kPanelDepth between its chunks).
// Element j of a chunk always lands in lane j % kLanes, in both the full-chunk loop (which the
// compiler vectorises) and the tail, so the sum does not depend on NT.
template <size_t NT, typename W, typename X>
void row_times_tokens(const W* row, const X* const* x, size_t n, float* out) {
  float lanes[NT][kLanes] = {};
  size_t k0 = 0;
  for (; k0 + kPanelDepth <= n; k0 += kPanelDepth) {
    const W* w = row + (k0 / kPanelDepth) * kPanelRows * kPanelDepth;
    for (size_t j = 0; j < kPanelDepth; j += kLanes) {
      for (size_t t = 0; t < NT; ++t) {
        for (size_t l = 0; l < kLanes; ++l) lanes[t][l] += widen(w[j + l]) * widen(x[t][k0 + j + l]);
      }
    }
  }
  if (k0 < n) {
    const W* w = row + (k0 / kPanelDepth) * kPanelRows * kPanelDepth;
    for (size_t j = 0; k0 + j < n; ++j) {
      for (size_t t = 0; t < NT; ++t) lanes[t][j % kLanes] += widen(w[j]) * widen(x[t][k0 + j]);
    }
  }
  for (size_t t = 0; t < NT; ++t) {
    const float a = (lanes[t][0] + lanes[t][4]) + (lanes[t][1] + lanes[t][5]);
    const float b = (lanes[t][2] + lanes[t][6]) + (lanes[t][3] + lanes[t][7]);
    out[t] = a + b;
  }
}

template <typename W, typename X>
void dot_panels(const W* panels, size_t padded_depth, size_t rows, const X* const* x, size_t tokens,
                size_t n, float* out) {
  const size_t panel_elements = kPanelRows * padded_depth;
  for (size_t r = 0; r < rows; ++r) {
    const W* row = panels + (r / kPanelRows) * panel_elements + (r % kPanelRows) * kPanelDepth;
    float* o = out + r * tokens;
    size_t t = 0;
    for (; t + kTokensPerPass <= tokens; t += kTokensPerPass) row_times_tokens<kTokensPerPass>(row, x + t, n, o + t);
    switch (tokens - t) {
      case 3: row_times_tokens<3>(row, x + t, n, o + t); break;
      case 2: row_times_tokens<2>(row, x + t, n, o + t); break;
      case 1: row_times_tokens<1>(row, x + t, n, o + t); break;
      default: break;
    }
  }
}

}  // namespace

const KernelTable& scalar_table() {
  static const KernelTable table = {"scalar", dot_panels<float, float>, dot_panels<uint16_t, float>, nullptr};
  return table;
}

}  // namespace isa
}  // namespace moe
