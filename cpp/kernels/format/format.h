// Weight formats: each one is a descriptor that knows its block geometry, how to pack one row
// of a [rows][depth] matrix into a panel (format/panel.h), and the scalar decode that is the
// oracle of every micro-kernel reading it. Packing (format/pack.cpp) and the tests go through
// these descriptors only; adding a format is one more descriptor file.
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_cpu.h"

namespace moe {

struct FormatInfo {
  WeightFormat format;
  const char* name;
  // Values per block along the depth (1 for dense formats): a caller tensor in this format
  // stores per row depth / block_values blocks of block_bytes, plus as many scales of
  // scale_bytes (none for dense formats). Depth must be a multiple of it.
  size_t block_values;
  size_t block_bytes;
  size_t scale_bytes;
  double bits_per_weight;  // in the caller's tensor

  // Bytes of one panel (kPanelRows rows) of `padded` depth (a multiple of kPanelDepth).
  size_t (*panel_bytes)(size_t padded);
  // `depth` f32 values -> one caller row in this format (rounded, or quantized by the rule of
  // moe_cpu.h's quantize_rows).
  void (*encode_row)(const float* values, size_t depth, uint8_t* codes, uint8_t* scales);
  // Row r of `panel` from one caller row in this very format (codes and scales copied exactly).
  void (*pack_row_native)(const uint8_t* codes, const uint8_t* scales, size_t depth, size_t padded,
                          uint8_t* panel, size_t r);
  // One caller row in this format -> `depth` f32 values (exact).
  void (*decode_row)(const uint8_t* codes, const uint8_t* scales, size_t depth, float* out);
  // Row r of `panel` -> `padded` f32 values (exact): the oracle of the micro-kernels.
  void (*decode_panel_row)(const uint8_t* panel, size_t padded, size_t r, float* out);

  bool quantized() const { return block_values > 1; }
  // Bytes of codes and of scales of one caller row of `depth` values.
  size_t row_code_bytes(size_t depth) const { return depth / block_values * block_bytes; }
  size_t row_scale_bytes(size_t depth) const { return depth / block_values * scale_bytes; }
};

const FormatInfo& format_info(WeightFormat format);

// Descriptors, one per file of format/.
extern const FormatInfo kFormatF32, kFormatBf16, kFormatF16, kFormatMxfp4, kFormatInt8;

}  // namespace moe
