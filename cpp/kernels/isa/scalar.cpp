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

template <typename W, typename X>
void dot_panels(const W* panels, size_t padded_depth, size_t rows, const X* const* x, size_t tokens,
                size_t n, float* out) {
  const size_t panel_elements = kPanelRows * padded_depth;
  for (size_t r = 0; r < rows; ++r) {
    const W* row = panels + (r / kPanelRows) * panel_elements + (r % kPanelRows) * kPanelDepth;
    for (size_t t = 0; t < tokens; ++t) {
      float lanes[kLanes] = {};
      for (size_t k0 = 0; k0 < n; k0 += kPanelDepth) {
        const W* w = row + (k0 / kPanelDepth) * kPanelRows * kPanelDepth;
        const size_t m = n - k0 < kPanelDepth ? n - k0 : kPanelDepth;
        for (size_t j = 0; j < m; ++j) lanes[j % kLanes] += widen(w[j]) * widen(x[t][k0 + j]);
      }
      const float a = (lanes[0] + lanes[4]) + (lanes[1] + lanes[5]);
      const float b = (lanes[2] + lanes[6]) + (lanes[3] + lanes[7]);
      out[r * tokens + t] = a + b;
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
