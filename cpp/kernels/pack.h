// Packing of caller weights into panels (panel.h), the format the forward kernels read.
//
// This is the one place where the W13 layout (halves or interleaved) and the orientation
// (out x in, or transposed) are handled; everything downstream sees one layout:
//   W13: per expert, the gate matrix [I][H] then the up matrix [I][H], each in panels;
//   W2:  per expert [H][I] in panels;
//   biases: f32, W13 bias [E][2I] in halves, W2 bias [E][H].
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_cpu.h"
#include "panel.h"

namespace moe {

// Row (or bias entry) of a layout-ordered W13 that holds halves-ordered row r.
inline size_t w13_source_row(W13Layout layout, size_t r, size_t intermediate) {
  if (layout == W13Layout::halves) return r;
  return r < intermediate ? 2 * r : 2 * (r - intermediate) + 1;
}

// What one caller tensor [E][parts * rows][depth] (or [E][depth][parts * rows] when
// transposed) holds: `parts` matrices of `rows` rows per expert (2 for W13: gate and up, in
// `layout`; 1 for W2).
struct ExpertTensor {
  const void* data;
  size_t element_bytes;  // 2 (bf16) or 4 (f32)
  size_t experts;
  size_t parts;
  size_t rows;
  size_t depth;
  W13Layout layout;
  bool transposed;
};

// Packs every matrix of `src` into `dst` (experts * parts matrices of PanelShape{rows, depth},
// one after another), on `threads` threads of the shared pool.
void pack_panels(const ExpertTensor& src, void* dst, unsigned threads);

}  // namespace moe
