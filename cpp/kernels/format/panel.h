// The packed weight layout the micro-kernels read: "panels" (layout p4x32).
//
// A matrix [rows][depth] (out x in) is cut into panels of kPanelRows rows, and the depth into
// chunks of kPanelDepth. Every format stores a panel as one contiguous run of bytes, chunk
// after chunk, so a tile reads one sequential stream (prefetchers follow it):
//   dense (f32, bf16, f16): chunk c, row r: 32 values          -> 4 * 32 values per chunk
//   mxfp4: codes  chunk c, row r: 16 bytes; byte j holds element j in its low nibble and
//                 element j + 16 in its high one (so a 16-lane decode takes one nibble half)
//          then scales chunk c, row r: one e8m0 byte           -> 64 + 4 bytes per chunk
//   int8:  codes  chunk c, row r: 32 int8
//          then scales chunk c, row r: one f16                  -> 128 + 8 bytes per chunk
// (a quantized panel keeps its few scale bytes after its codes: both streams advance together,
// a chunk's 4 scales sit in one line). Rows past the end of the matrix and depth past `depth`
// are zero, so kernels need no tail handling on the weights. Panels are padded to 64 bytes.
//
// Plain constants and functions in an anonymous namespace: the micro-kernel files include this
// header and must not share inline functions with other files (ODR rule, ukernel/ukernel.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moe {
namespace {

// 4 rows: the AVX-512 and NEON tile (4 rows x 6 tokens) and the AVX2 tile (4 x 3) cover a panel.
constexpr size_t kPanelRows = 4;
// 32 elements: one zmm of bf16 (vdpbf16ps pairs), two of f32; one quantization block.
constexpr size_t kPanelDepth = 32;
constexpr size_t kPanelAlignment = 64;

constexpr size_t kMxfp4CodeBytes = 16;  // per row and chunk
constexpr size_t kInt8CodeBytes = 32;
constexpr size_t kInt8ScaleBytes = 2;

inline size_t padded_depth(size_t depth) { return (depth + kPanelDepth - 1) / kPanelDepth * kPanelDepth; }
inline size_t panel_count(size_t rows) { return (rows + kPanelRows - 1) / kPanelRows; }
inline size_t align_panel(size_t bytes) { return (bytes + kPanelAlignment - 1) / kPanelAlignment * kPanelAlignment; }

// Offset of the scales of a quantized panel of `padded` depth: after all its codes.
inline size_t mxfp4_scales_offset(size_t padded) { return padded / kPanelDepth * kPanelRows * kMxfp4CodeBytes; }
inline size_t int8_scales_offset(size_t padded) { return padded / kPanelDepth * kPanelRows * kInt8CodeBytes; }

// The e2m1 values of the 16 mxfp4 codes (bit 3 the sign).
constexpr float kE2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                             -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// An mxfp4 e8m0 scale byte as the f32 2^(s - 127): the exponent field s, except s = 0 (the
// subnormal 2^-127) and 0xFF (NaN).
inline float e8m0_value(uint8_t s) {
  uint32_t bits = static_cast<uint32_t>(s) << 23;
  bits = s == 0 ? 0x00400000u : bits;
  bits = s == 0xff ? 0x7fc00000u : bits;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace
}  // namespace moe
