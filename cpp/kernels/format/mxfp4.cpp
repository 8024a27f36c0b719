// mxfp4 (OCP Microscaling v1.0 MXFP4, as gpt-oss ships it): blocks of 32 e2m1 values with one
// e8m0 scale along the depth. Caller rows hold per block 16 bytes of codes (element 2j in the
// low nibble of byte j, 2j + 1 in the high one) and one scale byte; panels regroup the
// nibbles (format/panel.h) so a 16-lane decode takes one nibble half of 16 bytes.
#include <cmath>
#include <cstring>
#include <limits>

#include "format/format.h"
#include "format/panel.h"

namespace moe {

namespace {

constexpr uint8_t kNanScale = 0xff;
constexpr int kScaleBias = 127;
// floor(log2(max|v|)) - kE2m1MaxExponent: 6 = 1.5 * 2^2, so the largest value lands in [4, 8).
constexpr int kE2m1MaxExponent = 2;

// Nearest e2m1 code of x (already divided by the scale), ties to the even code, saturating:
// the magnitude code counts the grid midpoints below |x| (a midpoint itself goes to the even
// neighbour, hence > or >= by turns). Branch-free, so the loop vectorises.
uint8_t e2m1_code(float x) {
  const float a = std::fabs(x);
  const int magnitude = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return static_cast<uint8_t>(magnitude | ((bits >> 31) << 3));
}

// One block of 32 values -> 32 codes (one per byte) and the scale byte.
uint8_t quantize_block(const float* v, uint8_t* codes) {
  float amax = 0.0f;
  bool finite = true;
  for (size_t j = 0; j < kPanelDepth; ++j) {
    const float a = std::fabs(v[j]);
    finite = finite && a <= std::numeric_limits<float>::max();
    amax = a > amax ? a : amax;
  }
  if (!finite) {
    std::memset(codes, 0, kPanelDepth);
    return kNanScale;
  }
  int s = 0;
  if (amax > 0.0f) {
    s = std::ilogb(amax) - kE2m1MaxExponent + kScaleBias;
    s = s < 0 ? 0 : (s > 254 ? 254 : s);
  }
  // v / 2^(s - 127) as one multiplication by a power of two: exact (the quotient is at most 8,
  // so it does not overflow, and scaling up does not lose bits).
  const double inverse = std::ldexp(1.0, kScaleBias - s);
  for (size_t j = 0; j < kPanelDepth; ++j) codes[j] = e2m1_code(static_cast<float>(v[j] * inverse));
  return static_cast<uint8_t>(s);
}

size_t panel_bytes(size_t padded) { return align_panel(padded / kPanelDepth * kPanelRows * (kMxfp4CodeBytes + 1)); }

uint8_t* code_slot(uint8_t* panel, size_t c, size_t r) { return panel + (c * kPanelRows + r) * kMxfp4CodeBytes; }
uint8_t* scale_slot(uint8_t* panel, size_t padded, size_t c, size_t r) {
  return panel + mxfp4_scales_offset(padded) + c * kPanelRows + r;
}

// 32 codes (one per byte, element order) -> the panel's nibble order.
void store_codes(const uint8_t* codes, uint8_t* slot) {
  for (size_t j = 0; j < kMxfp4CodeBytes; ++j) slot[j] = static_cast<uint8_t>(codes[j] | (codes[j + 16] << 4));
}

void encode_row(const float* values, size_t depth, uint8_t* blocks, uint8_t* scales) {
  uint8_t codes[kPanelDepth];
  for (size_t c = 0; c < depth / kPanelDepth; ++c) {
    scales[c] = quantize_block(values + c * kPanelDepth, codes);
    for (size_t j = 0; j < kMxfp4CodeBytes; ++j) {
      blocks[c * kMxfp4CodeBytes + j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
    }
  }
}

void pack_row_native(const uint8_t* blocks, const uint8_t* scales, size_t depth, size_t padded, uint8_t* panel,
                     size_t r) {
  uint8_t codes[kPanelDepth];
  for (size_t c = 0; c < depth / kPanelDepth; ++c) {
    for (size_t j = 0; j < kMxfp4CodeBytes; ++j) {
      const uint8_t b = blocks[c * kMxfp4CodeBytes + j];
      codes[2 * j] = b & 0xf;
      codes[2 * j + 1] = b >> 4;
    }
    store_codes(codes, code_slot(panel, c, r));
    *scale_slot(panel, padded, c, r) = scales[c];
  }
}

// The caller's rows are checkpoint blocks: the checkpoint decoder of format/mxfp4_decode.cpp.
void decode_row(const uint8_t* blocks, const uint8_t* scales, size_t depth, float* out) {
  decode_mxfp4_f32(blocks, scales, depth / kPanelDepth, out);
}

void decode_panel_row(const uint8_t* panel, size_t padded, size_t r, float* out) {
  uint8_t* p = const_cast<uint8_t*>(panel);
  for (size_t c = 0; c < padded / kPanelDepth; ++c) {
    const float scale = e8m0_value(*scale_slot(p, padded, c, r));
    const uint8_t* codes = code_slot(p, c, r);
    for (size_t j = 0; j < kMxfp4CodeBytes; ++j) {
      out[c * kPanelDepth + j] = kE2m1[codes[j] & 0xf] * scale;
      out[c * kPanelDepth + j + 16] = kE2m1[codes[j] >> 4] * scale;
    }
  }
}

}  // namespace

const FormatInfo kFormatMxfp4 = {WeightFormat::mxfp4, "mxfp4", kPanelDepth, kMxfp4CodeBytes, 1, 4.25,
                                 panel_bytes, encode_row, pack_row_native, decode_row, decode_panel_row};

}  // namespace moe
