// NEON weight decoders (the `Weights` structs of ukernel/gemm_tile.h) shared by neon/gemm.cpp
// (armv8-a) and neon/gemm_bf16.cpp (+bf16): step s of a row is 4 f32 lanes, elements
// [4s, 4s + 4) of its 32-element chunk, decoded exactly in registers. Baseline armv8-a only.
// Everything is in an anonymous namespace, so each file compiles its own copy with its own
// flags (ODR rule, ukernel/ukernel.h).
#pragma once

#include <arm_neon.h>

#include <cstring>

#include "ukernel/gemm_tile.h"

namespace moe {
namespace ukernel {
namespace {

// f32 lanes of a q register.
constexpr size_t kNeonStep = 4;

// Panels are read as one sequential stream per tile, which the hardware prefetchers follow
// (the old NEON kernels had no software prefetch either).
template <size_t Size>
struct DenseChunk {
  static constexpr size_t kChunkBytes = kPanelRows * kPanelDepth * Size;
  static void prefetch(const uint8_t*, size_t, size_t) {}
};

struct F32Weights : DenseChunk<4> {
  using WV = float32x4_t;
  struct Chunk {
    const float* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const float*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const { return vld1q_f32(w + r * kPanelDepth + kNeonStep * s); }
  };
};

// bf16 widened to f32: the bits shifted into the high half.
struct Bf16Weights : DenseChunk<2> {
  using WV = float32x4_t;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const {
      return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(w + r * kPanelDepth + kNeonStep * s), 16));
    }
  };
};

// f16 widened by FCVTL (baseline armv8-a), exact.
struct F16Weights : DenseChunk<2> {
  using WV = float32x4_t;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const {
      return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(w + r * kPanelDepth + kNeonStep * s)));
    }
  };
};

// mxfp4: step s reads nibble half s / 4 of the row's 16 code bytes (format/panel.h), elements
// 4 (s % 4) onwards. Two TBL lookups give the low and high byte of each e2m1 value's bf16 bits
// (exact, -0 included); zipped into halfwords and shifted into f32 lanes, then times the block
// scale: the product is the exactly decoded weight, as the scalar decode computes it.
// bf16 bits of the e2m1 values 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives (0x0000, 0x3f00,
// 0x3f80, ...), low and high byte.
constexpr uint8_t kE2m1Bf16Lo[16] = {0x00, 0x00, 0x80, 0xc0, 0x00, 0x40, 0x80, 0xc0,
                                     0x00, 0x00, 0x80, 0xc0, 0x00, 0x40, 0x80, 0xc0};
constexpr uint8_t kE2m1Bf16Hi[16] = {0x00, 0x3f, 0x3f, 0x3f, 0x40, 0x40, 0x40, 0x40,
                                     0x80, 0xbf, 0xbf, 0xbf, 0xc0, 0xc0, 0xc0, 0xc0};

struct Mxfp4Weights {
  using WV = float32x4_t;
  static constexpr size_t kChunkBytes = kPanelRows * kMxfp4CodeBytes;
  static void prefetch(const uint8_t*, size_t, size_t) {}
  struct Chunk {
    const uint8_t* codes;
    uint8x16_t lo, hi;
    float scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c) : codes(panel + c * kChunkBytes) {
      lo = vld1q_u8(kE2m1Bf16Lo);
      hi = vld1q_u8(kE2m1Bf16Hi);
      const uint8_t* s = panel + mxfp4_scales_offset(padded) + c * kPanelRows;
      for (size_t r = 0; r < kPanelRows; ++r) scale[r] = e8m0_value(s[r]);
    }
    WV load(size_t r, size_t s) const {
      const uint8x16_t q = vld1q_u8(codes + r * kMxfp4CodeBytes);
      const uint8x16_t nibble = s < 4 ? vandq_u8(q, vdupq_n_u8(0x0f)) : vshrq_n_u8(q, 4);
      const uint8x16_t l = vqtbl1q_u8(lo, nibble), h = vqtbl1q_u8(hi, nibble);
      const uint16x8_t bf16 = vreinterpretq_u16_u8(s % 4 < 2 ? vzip1q_u8(l, h) : vzip2q_u8(l, h));
      const uint32x4_t bits = s % 2 == 0 ? vshll_n_u16(vget_low_u16(bf16), 16) : vshll_high_n_u16(bf16, 16);
      return vmulq_n_f32(vreinterpretq_f32_u32(bits), scale[r]);
    }
  };
};

// int8: 4 codes widened to f32, times the block's f16 scale (exact in f32).
struct Int8Weights {
  using WV = float32x4_t;
  static constexpr size_t kChunkBytes = kPanelRows * kInt8CodeBytes;
  static void prefetch(const uint8_t*, size_t, size_t) {}
  struct Chunk {
    const int8_t* codes;
    float scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c)
        : codes(reinterpret_cast<const int8_t*>(panel + c * kChunkBytes)) {
      const uint16_t* d = reinterpret_cast<const uint16_t*>(panel + int8_scales_offset(padded) + c * kPanelRows * kInt8ScaleBytes);
      vst1q_f32(scale, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d))));
    }
    WV load(size_t r, size_t s) const {
      const int16x8_t q = vmovl_s8(vld1_s8(codes + r * kInt8CodeBytes + 2 * kNeonStep * (s / 2)));
      const int32x4_t i = s % 2 == 0 ? vmovl_s16(vget_low_s16(q)) : vmovl_high_s16(q);
      return vmulq_n_f32(vcvtq_f32_s32(i), scale[r]);
    }
  };
};

}  // namespace
}  // namespace ukernel
}  // namespace moe
