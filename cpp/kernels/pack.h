// Packing of caller weights into the layout the forward kernels read.
//
// This is the one place where the W13 layout (halves or interleaved) and the orientation
// (out x in, or transposed) are handled; everything downstream sees one layout:
//   W13: per expert [2I][H] row-major, gate rows 0..I-1 then up rows I..2I-1 (halves);
//   W2:  per expert [H][I] row-major;
//   biases: f32, W13 bias [E][2I] in halves, W2 bias [E][H].
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_cpu.h"

namespace moe {

// Copies one expert matrix into dst [rows][cols] row-major, element type preserved.
// Row r of dst comes from source row `source_row(r)` where source_row maps the halves
// order to `layout` (identity for halves). `transposed` means the source is [cols][rows].
// Work is split over `threads` threads of the shared pool.
void pack_expert_matrices(const void* src, void* dst, size_t element_bytes, size_t experts,
                          size_t rows, size_t cols, W13Layout layout, bool transposed,
                          unsigned threads);

// Row (or bias entry) of a layout-ordered W13 that holds halves-ordered row r.
inline size_t w13_source_row(W13Layout layout, size_t r, size_t intermediate) {
  if (layout == W13Layout::halves) return r;
  return r < intermediate ? 2 * r : 2 * (r - intermediate) + 1;
}

}  // namespace moe
