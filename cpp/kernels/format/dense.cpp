// Dense formats: f32, bf16 and f16, one value per element, packed as format/panel.h says.
#include <cmath>
#include <cstring>

#include "format/format.h"
#include "format/panel.h"

namespace moe {

uint16_t f32_to_f16(float value) {
  uint32_t x;
  std::memcpy(&x, &value, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  // Rounding to nearest even at the f16 precision, done by an f32 addition: exact for normals
  // (ulp 2^-10 relative) and subnormals (ulp 2^-24 absolute).
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (abs < 0x38800000u) {                                               // f16 subnormal or zero
    float f;
    std::memcpy(&f, &abs, sizeof f);
    const float scaled = f + 0.5f;  // ulp of 0.5f is 2^-24: rounds to the subnormal grid
    uint32_t bits;
    std::memcpy(&bits, &scaled, sizeof bits);
    return static_cast<uint16_t>(sign | (bits - 0x3f000000u));
  }
  const uint32_t mantissa_odd = (abs >> 13) & 1u;
  const uint32_t rounded = abs + 0xfffu + mantissa_odd;
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;  // exact
    std::memcpy(&bits, &magnitude, sizeof bits);
    bits |= sign;
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace {

// Offset in bytes of element (r, k) of a dense panel with `size`-byte elements.
inline size_t dense_offset(size_t r, size_t k, size_t size) {
  return ((k / kPanelDepth) * kPanelRows * kPanelDepth + r * kPanelDepth + k % kPanelDepth) * size;
}

template <size_t Size>
size_t dense_panel_bytes(size_t padded) { return align_panel(kPanelRows * padded * Size); }

template <size_t Size>
void dense_pack_native(const uint8_t* codes, const uint8_t*, size_t depth, size_t, uint8_t* panel, size_t r) {
  for (size_t k = 0; k < depth; k += kPanelDepth) {
    const size_t n = depth - k < kPanelDepth ? depth - k : kPanelDepth;
    std::memcpy(panel + dense_offset(r, k, Size), codes + k * Size, n * Size);
  }
}

float value_f32(const uint8_t* p) { float v; std::memcpy(&v, p, 4); return v; }
float value_bf16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_f32(v); }
float value_f16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return f16_to_f32(v); }
void store_f32(float v, uint8_t* p) { std::memcpy(p, &v, 4); }
void store_bf16(float v, uint8_t* p) { const uint16_t b = f32_to_bf16(v); std::memcpy(p, &b, 2); }
void store_f16(float v, uint8_t* p) { const uint16_t b = f32_to_f16(v); std::memcpy(p, &b, 2); }

template <size_t Size, void (*Store)(float, uint8_t*)>
void dense_encode_row(const float* values, size_t depth, uint8_t* codes, uint8_t*) {
  for (size_t k = 0; k < depth; ++k) Store(values[k], codes + k * Size);
}

template <size_t Size, float (*Value)(const uint8_t*)>
void dense_decode_row(const uint8_t* codes, const uint8_t*, size_t depth, float* out) {
  for (size_t k = 0; k < depth; ++k) out[k] = Value(codes + k * Size);
}

template <size_t Size, float (*Value)(const uint8_t*)>
void dense_decode_panel_row(const uint8_t* panel, size_t padded, size_t r, float* out) {
  for (size_t k = 0; k < padded; ++k) out[k] = Value(panel + dense_offset(r, k, Size));
}

}  // namespace

const FormatInfo kFormatF32 = {WeightFormat::f32, "f32", 1, 4, 0, 32.0,
                               dense_panel_bytes<4>, dense_encode_row<4, store_f32>, dense_pack_native<4>,
                               dense_decode_row<4, value_f32>, dense_decode_panel_row<4, value_f32>};
const FormatInfo kFormatBf16 = {WeightFormat::bf16, "bf16", 1, 2, 0, 16.0,
                                dense_panel_bytes<2>, dense_encode_row<2, store_bf16>, dense_pack_native<2>,
                                dense_decode_row<2, value_bf16>, dense_decode_panel_row<2, value_bf16>};
const FormatInfo kFormatF16 = {WeightFormat::f16, "f16", 1, 2, 0, 16.0,
                               dense_panel_bytes<2>, dense_encode_row<2, store_f16>, dense_pack_native<2>,
                               dense_decode_row<2, value_f16>, dense_decode_panel_row<2, value_f16>};

const FormatInfo& format_info(WeightFormat format) {
  switch (format) {
    case WeightFormat::f32: return kFormatF32;
    case WeightFormat::bf16: return kFormatBf16;
    case WeightFormat::f16: return kFormatF16;
    case WeightFormat::mxfp4: return kFormatMxfp4;
    case WeightFormat::int8: return kFormatInt8;
  }
  throw InvalidArgument("unknown weight format");
}

const char* weight_format_name(WeightFormat format) { return format_info(format).name; }

void convert_f16_to_f32(const uint16_t* src, float* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(src[i]);
}

// f16 -> f32 is exact, so this is one rounding (to nearest even), as f32 -> bf16.
void convert_f16_to_bf16(const uint16_t* src, uint16_t* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = f32_to_bf16(f16_to_f32(src[i]));
}

}  // namespace moe
