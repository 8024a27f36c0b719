// Scalar kernels: the reference every SIMD path is tested against, and the fallback on any
// CPU. Plain C++ the compiler may auto-vectorise for the baseline ISA (SSE2, armv8-a NEON).
#include "../dot.h"
#include "kernel_table.h"

namespace moe {
namespace isa {

namespace {

template <typename W, typename X>
void dot_rows(const W* w, size_t stride, size_t rows, const X* const* x, size_t tokens, size_t n,
              float* out) {
  for (size_t r = 0; r < rows; ++r) dot::row_times_token_list(w + r * stride, x, tokens, n, out + r * tokens);
}

}  // namespace

const KernelTable& scalar_table() {
  static const KernelTable table = {"scalar", dot_rows<float, float>, dot_rows<uint16_t, float>, nullptr};
  return table;
}

}  // namespace isa
}  // namespace moe
