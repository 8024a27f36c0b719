// NEON bf16 micro-kernels (BFDOT, Armv8.6 FEAT_BF16: Graviton 3 and 4, Grace, AmpereOne, Apple
// M2 and later), all prefill. Compiled with -march=armv8.2-a+bf16; each kernel needs the "bf16"
// feature (HWCAP2_BF16), which the registry checks before running it. ODR rule:
// ukernel/ukernel.h.
#include <arm_neon.h>

#include "ukernel/gemm_tile.h"
#include "ukernel/neon/weights.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

// BFDOT: lane l of a (row, token) accumulator adds the pair (2l, 2l + 1) of each 8-element
// step. The register budget of gemm.cpp's FmaOps.
struct BfdotOps {
  using V = float32x4_t;
  using X = uint16_t;
  using XV = bfloat16x8_t;
  static constexpr size_t kStep = 8;
  static constexpr size_t kTokens = 6;
  static constexpr bool kWeightsFirst = true;
  static constexpr size_t kPairTokens = 2;  // as FmaOps
  static V zero() { return vdupq_n_f32(0.0f); }
  // Lane by lane below kStep (as gemm.cpp's FmaOps::load_x, no memcpy call).
  static XV load_x(const uint16_t* p, size_t left) {
    if (left >= kStep) return vreinterpretq_bf16_u16(vld1q_u16(p));
    uint16x8_t v = vdupq_n_u16(0);
    switch (left) {
      case 7: v = vsetq_lane_u16(p[6], v, 6); [[fallthrough]];
      case 6: v = vsetq_lane_u16(p[5], v, 5); [[fallthrough]];
      case 5: v = vsetq_lane_u16(p[4], v, 4); [[fallthrough]];
      case 4: v = vsetq_lane_u16(p[3], v, 3); [[fallthrough]];
      case 3: v = vsetq_lane_u16(p[2], v, 2); [[fallthrough]];
      case 2: v = vsetq_lane_u16(p[1], v, 1); [[fallthrough]];
      default: v = vsetq_lane_u16(p[0], v, 0);
    }
    return vreinterpretq_bf16_u16(v);
  }
  static V madd(V acc, bfloat16x8_t w, XV x) { return vbfdotq_f32(acc, w, x); }
  static float sum(V v) { return vaddvq_f32(v); }
};

// bf16 pairs as they are, for BFDOT.
struct Bf16PairWeights : DenseChunk<2> {
  using WV = bfloat16x8_t;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const { return vreinterpretq_bf16_u16(vld1q_u16(w + r * kPanelDepth + BfdotOps::kStep * s)); }
  };
};

// Decodes a whole panel to f32 (weights.h) and rounds it to a dense bf16 panel (BFCVTN, to
// nearest even) for prefill.
template <typename Weights>
struct DecodeToBf16 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    bfloat16_t* out = reinterpret_cast<bfloat16_t*>(dense);
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        bfloat16_t* row = out + (c * kPanelRows + r) * kPanelDepth;
        for (size_t s = 0; s < kPanelDepth / kNeonStep; s += 2) {
          vst1q_bf16(row + kNeonStep * s, vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(chunk.load(r, s)), chunk.load(r, s + 1)));
        }
      }
    }
  }
};

constexpr auto kB = DType::bf16;
constexpr auto kP = PanelLayout::p4x32;
constexpr auto kPrefill = Regime::prefill;

const UKernel kKernels[] = {
    {"gemm_bf16_bf16__neonbf16_4x6", WeightFormat::bf16, kB, kP, 4, 6, kPrefill, "neon", "bf16", 0,
     gemm<BfdotOps, Bf16PairWeights>},
    {"gemm_f16_bf16__neonbf16_4x6_panel", WeightFormat::f16, kB, kP, 4, 6, kPrefill, "neon", "bf16", 8,
     gemm_decoded<BfdotOps, Bf16PairWeights, DecodeToBf16<F16Weights>>},
    {"gemm_mxfp4_bf16__neonbf16_4x6_panel", WeightFormat::mxfp4, kB, kP, 4, 6, kPrefill, "neon", "bf16", 8,
     gemm_decoded<BfdotOps, Bf16PairWeights, DecodeToBf16<Mxfp4Weights>>},
    {"gemm_int8_bf16__neonbf16_4x6_panel", WeightFormat::int8, kB, kP, 4, 6, kPrefill, "neon", "bf16", 8,
     gemm_decoded<BfdotOps, Bf16PairWeights, DecodeToBf16<Int8Weights>>},
};

}  // namespace

UKernelList neon_bf16_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
