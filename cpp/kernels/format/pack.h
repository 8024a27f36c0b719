// Packing of caller weights into panels (format/panel.h), the layout the micro-kernels read.
//
// This is the one place where the W13 layout (halves or interleaved), the orientation (out x
// in, or transposed) and the conversion between formats (rounding, quantization) are handled;
// everything downstream sees one layout:
//   W13: per expert, the gate matrix [I][H] then the up matrix [I][H], each in panels;
//   W2:  per expert [H][I] in panels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/format.h"

namespace moe {

// Row (or bias entry) of a layout-ordered W13 that holds halves-ordered row r.
inline size_t w13_source_row(W13Layout layout, size_t r, size_t intermediate) {
  if (layout == W13Layout::halves) return r;
  return r < intermediate ? 2 * r : 2 * (r - intermediate) + 1;
}

// What one caller tensor [E][parts * rows][depth] (or [E][depth][parts * rows] when
// transposed) holds: `parts` matrices of `rows` rows per expert (2 for W13: gate and up, in
// `layout`; 1 for W2). Given whole, or per expert (WeightTensor::expert_data: expert e's
// [parts * rows][depth] or [depth][parts * rows] alone); both pack to the same bytes.
struct ExpertTensor {
  WeightTensor tensor;
  size_t experts;
  size_t parts;
  size_t rows;
  size_t depth;
  W13Layout layout;
  bool transposed;
};

// Bytes of one packed matrix of `rows` x `depth` in `format`.
size_t packed_matrix_bytes(const FormatInfo& format, size_t rows, size_t depth);

// Throws InvalidArgument for a tensor packing cannot read or convert: no data, missing scales,
// a per-expert tensor without one pointer per expert, quantized and transposed, a depth that is
// not a multiple of a block. pack_panels checks it first; callers may check before allocating.
void check_packable(const ExpertTensor& src, const FormatInfo& format);

// Packs every matrix of `src` into `dst` (experts * parts matrices in `format`, one after
// another, packed_matrix_bytes each), on `threads` threads of the shared pool. Throws
// InvalidArgument (before writing) for a combination packing cannot do.
void pack_panels(const ExpertTensor& src, const FormatInfo& format, uint8_t* dst, unsigned threads);

}  // namespace moe
