// int8: blocks of 32 int8 codes in [-127, 127] with one f16 scale d along the depth, value =
// q * d (ggml's q8_0; 8.5 bits a weight). q * d is exact in f32 (8 + 11 significant bits), so
// decode kernels with f32 activations compute with exactly the decoded weights.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "format/format.h"
#include "format/panel.h"

namespace moe {

namespace {

constexpr float kInt8Max = 127.0f;
constexpr double kF16Max = 65504.0;  // the largest finite f16: the largest scale

float scale_value(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return f16_to_f32(h);
}

// One block of 32 values -> 32 codes and the f16 scale. d is rounded to f16 first and the
// codes are computed against the stored d (q = round(v / d) on the exact quotient, ties away
// from zero), so they reconstruct as well as the scale allows.
uint16_t quantize_block(const float* v, int8_t* codes) {
  float amax = 0.0f;
  bool finite = true;
  for (size_t j = 0; j < kPanelDepth; ++j) {
    const float a = std::fabs(v[j]);
    finite = finite && a <= std::numeric_limits<float>::max();
    amax = a > amax ? a : amax;
  }
  // int8 has no code for NaN or infinity (mxfp4 has its NaN scale): refuse, never round it away.
  if (!finite) throw InvalidArgument("int8: the weights hold NaN or infinity, which int8 blocks cannot represent");
  const uint16_t d16 = f32_to_f16(amax / kInt8Max);
  const double d = f16_to_f32(d16);
  if (!(d <= kF16Max)) {
    throw InvalidArgument("int8: a block's largest magnitude (" + std::to_string(amax) +
                          ") needs a scale beyond the f16 range (127 x 65504); use f32, bf16 or mxfp4 weights");
  }
  const double inverse_ok = d > 0.0 && d <= std::numeric_limits<float>::max() ? 1.0 : 0.0;
  const double divisor = inverse_ok > 0 ? d : 1.0;
  for (size_t j = 0; j < kPanelDepth; ++j) {
    // The exact quotient (in double), rounded half away from zero, then clamped.
    const double x = v[j] / divisor * inverse_ok;
    double q = std::fabs(x) + 0.5;
    q = q < kInt8Max ? q : kInt8Max;
    const int magnitude = static_cast<int>(q);
    codes[j] = static_cast<int8_t>(x < 0 ? -magnitude : magnitude);
  }
  return d16;
}

size_t panel_bytes(size_t padded) {
  return align_panel(padded / kPanelDepth * kPanelRows * (kInt8CodeBytes + kInt8ScaleBytes));
}

uint8_t* code_slot(uint8_t* panel, size_t c, size_t r) { return panel + (c * kPanelRows + r) * kInt8CodeBytes; }
uint8_t* scale_slot(uint8_t* panel, size_t padded, size_t c, size_t r) {
  return panel + int8_scales_offset(padded) + (c * kPanelRows + r) * kInt8ScaleBytes;
}

void encode_row(const float* values, size_t depth, uint8_t* codes, uint8_t* scales) {
  for (size_t c = 0; c < depth / kPanelDepth; ++c) {
    const uint16_t d = quantize_block(values + c * kPanelDepth, reinterpret_cast<int8_t*>(codes + c * kInt8CodeBytes));
    std::memcpy(scales + c * kInt8ScaleBytes, &d, kInt8ScaleBytes);
  }
}

void pack_row_native(const uint8_t* codes, const uint8_t* scales, size_t depth, size_t padded, uint8_t* panel,
                     size_t r) {
  for (size_t c = 0; c < depth / kPanelDepth; ++c) {
    std::memcpy(code_slot(panel, c, r), codes + c * kInt8CodeBytes, kInt8CodeBytes);
    std::memcpy(scale_slot(panel, padded, c, r), scales + c * kInt8ScaleBytes, kInt8ScaleBytes);
  }
}

void decode_row(const uint8_t* codes, const uint8_t* scales, size_t depth, float* out) {
  for (size_t c = 0; c < depth / kPanelDepth; ++c) {
    const float d = scale_value(scales + c * kInt8ScaleBytes);
    for (size_t j = 0; j < kPanelDepth; ++j) {
      out[c * kPanelDepth + j] = static_cast<float>(static_cast<int8_t>(codes[c * kPanelDepth + j])) * d;
    }
  }
}

void decode_panel_row(const uint8_t* panel, size_t padded, size_t r, float* out) {
  uint8_t* p = const_cast<uint8_t*>(panel);
  for (size_t c = 0; c < padded / kPanelDepth; ++c) {
    const float d = scale_value(scale_slot(p, padded, c, r));
    const uint8_t* codes = code_slot(p, c, r);
    for (size_t j = 0; j < kPanelDepth; ++j) out[c * kPanelDepth + j] = static_cast<float>(static_cast<int8_t>(codes[j])) * d;
  }
}

}  // namespace

const FormatInfo kFormatInt8 = {WeightFormat::int8, "int8", kPanelDepth, kInt8CodeBytes, kInt8ScaleBytes, 8.5,
                                panel_bytes, encode_row, pack_row_native, decode_row, decode_panel_row};

}  // namespace moe
