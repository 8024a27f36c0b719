// The packed weight format the dot-product kernels read: "panels".
//
// A matrix [rows][depth] (out x in) is cut into panels of kPanelRows rows. Inside a panel the
// depth is walked in chunks of kPanelDepth; each chunk stores its rows one after another:
//   panel p, chunk c, row r (< kPanelRows), element j (< kPanelDepth)
//     = matrix[p * kPanelRows + r][c * kPanelDepth + j]
// so a micro-kernel working on the panel's rows reads one sequential stream (prefetchers
// follow it; no second stream per row), and every chunk is one 64-byte line of bf16 or two of
// f32 per row. Rows past the end of the matrix and depth past `depth` are zero: kernels need
// no tail handling on the weights, only on the activations.
#pragma once

#include <cstddef>

namespace moe {

// 4 rows: the AVX-512 tile (4 rows x 6 tokens) and the AVX2 tile (4 x 3) cover a panel.
constexpr size_t kPanelRows = 4;
// 32 elements: one zmm of bf16 (vdpbf16ps pairs), two of f32.
constexpr size_t kPanelDepth = 32;

struct PanelShape {
  size_t rows;
  size_t depth;

  size_t panels() const { return (rows + kPanelRows - 1) / kPanelRows; }
  size_t padded_depth() const { return (depth + kPanelDepth - 1) / kPanelDepth * kPanelDepth; }
  size_t panel_elements() const { return kPanelRows * padded_depth(); }
  size_t elements() const { return panels() * panel_elements(); }
  // Index of matrix[r][k] in the packed matrix.
  size_t index(size_t r, size_t k) const {
    return (r / kPanelRows) * panel_elements() + (k / kPanelDepth) * (kPanelRows * kPanelDepth) +
           (r % kPanelRows) * kPanelDepth + k % kPanelDepth;
  }
};

}  // namespace moe
