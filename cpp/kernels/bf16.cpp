// bf16 <-> f32 conversion (docs/spec.md "Dtypes": round to nearest, ties to even; NaN stays NaN).
#include <cstring>

#include "moe_cpu.h"

namespace moe {
namespace {

constexpr uint32_t kAbsMask = 0x7fffffffu;
constexpr uint32_t kInfBits = 0x7f800000u;
constexpr uint16_t kQuietBit = 0x0040u;  // top mantissa bit of a bf16

// Branch-free apart from a select, so the conversion loop below auto-vectorizes.
inline uint16_t round_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry out of
  // the mantissa correctly bumps the exponent (the largest finite floats round to infinity).
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  // NaN: truncating could clear every kept mantissa bit (giving infinity), and rounding could
  // carry into the sign; keep sign and high payload bits, and force the quiet bit instead.
  const uint32_t nan = (bits >> 16) | kQuietBit;
  return static_cast<uint16_t>((bits & kAbsMask) > kInfBits ? nan : rounded);
}

inline float widen_bf16(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

}  // namespace

uint16_t f32_to_bf16(float value) { return round_to_bf16(value); }

float bf16_to_f32(uint16_t bits) { return widen_bf16(bits); }

void convert_f32_to_bf16(const float* src, uint16_t* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = round_to_bf16(src[i]);
}

void convert_bf16_to_f32(const uint16_t* src, float* dst, size_t count) {
  for (size_t i = 0; i < count; ++i) dst[i] = widen_bf16(src[i]);
}

}  // namespace moe
