// MXFP4 decode (OCP Microscaling, as gpt-oss ships its expert weights): a block of 32 values
// is 16 bytes of e2m1 codes, the even element in the low nibble, plus one e8m0 scale byte s
// meaning 2^(s - 127); s = 0xFF is NaN.
//
// Every e2m1 value times a power of two is exact in f32 (at most two significant bits), and
// exact in bf16 too, so the bf16 result is the upper half of the f32 bits: no rounding.
#include <cstring>

#include "format/panel.h"
#include "moe_cpu.h"

namespace moe {
namespace {

inline uint16_t upper_half(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return static_cast<uint16_t>(bits >> 16);
}

// Per block: the 16 possible values under its scale first, then two lookups per byte.
template <typename Out, typename Store>
void decode(const uint8_t* blocks, const uint8_t* scales, size_t num_blocks, Out* out, Store store) {
  Out table[16];
  for (size_t b = 0; b < num_blocks; ++b) {
    const float scale = e8m0_value(scales[b]);
    for (size_t c = 0; c < 16; ++c) table[c] = store(kE2m1[c] * scale);
    const uint8_t* codes = blocks + b * kMxfp4BlockBytes;
    Out* dst = out + b * kMxfp4BlockValues;
    for (size_t i = 0; i < kMxfp4BlockBytes; ++i) {
      dst[2 * i] = table[codes[i] & 0x0F];
      dst[2 * i + 1] = table[codes[i] >> 4];
    }
  }
}

}  // namespace

void decode_mxfp4_f32(const uint8_t* blocks, const uint8_t* scales, size_t num_blocks, float* out) {
  decode(blocks, scales, num_blocks, out, [](float v) { return v; });
}

void decode_mxfp4_bf16(const uint8_t* blocks, const uint8_t* scales, size_t num_blocks,
                       uint16_t* out) {
  decode(blocks, scales, num_blocks, out, upper_half);
}

}  // namespace moe
