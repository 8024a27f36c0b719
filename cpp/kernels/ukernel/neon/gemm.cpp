// NEON (Advanced SIMD) micro-kernels for every arm64 CPU: baseline armv8-a, compiled with
// -march=armv8-a. The bf16 dot products (BFDOT) live in gemm_bf16.cpp, compiled with +bf16,
// and run only where the registry has seen the CPU's bf16 feature. ODR rule: ukernel/ukernel.h.
#include <arm_neon.h>

#include "ukernel/gemm_tile.h"
#include "ukernel/neon/weights.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

// f32 FMAs, 4 lanes: 4 rows x 6 tokens = 24 accumulators, the 4 weight vectors and the token
// vector fill the 32 v registers; each weight load feeds 6 FMAs and each token load 4. Lane l
// of a (row, token) accumulator takes the depths j = l (mod 4), reduced once at the end.
struct FmaOps {
  using V = float32x4_t;
  using X = float;
  using XV = float32x4_t;
  static constexpr size_t kStep = kNeonStep;
  static constexpr size_t kTokens = 6;
  static constexpr bool kWeightsFirst = true;
  static constexpr size_t kPairTokens = 2;  // 16 accumulators, 2 token vectors, decode temporaries
  static V zero() { return vdupq_n_f32(0.0f); }
  // A step runs only with left >= 1. Lane by lane below kStep: a copy loop would become a
  // memcpy call, across which GCC spills every accumulator.
  static XV load_x(const float* p, size_t left) {
    if (left >= kStep) return vld1q_f32(p);
    float32x4_t v = vsetq_lane_f32(p[0], vdupq_n_f32(0.0f), 0);
    if (left > 1) v = vsetq_lane_f32(p[1], v, 1);
    if (left > 2) v = vsetq_lane_f32(p[2], v, 2);
    return v;
  }
  static V madd(V acc, V w, XV x) { return vfmaq_f32(acc, w, x); }
  static float sum(V v) { return vaddvq_f32(v); }  // pairwise: a fixed order
};

// Decodes a whole panel into a dense f32 panel (format/panel.h) for prefill.
template <typename Weights>
struct DecodeToF32 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    float* out = reinterpret_cast<float*>(dense);
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        float* row = out + (c * kPanelRows + r) * kPanelDepth;
        for (size_t s = 0; s < kPanelDepth / kNeonStep; ++s) vst1q_f32(row + kNeonStep * s, chunk.load(r, s));
      }
    }
  }
};

constexpr auto kF = DType::f32;
constexpr auto kP = PanelLayout::p4x32;

// Best first for each format: the prefill kernel that decodes a panel once, then the kernel
// reading the panels directly.
const UKernel kKernels[] = {
    {"gemm_f32_f32__neon_4x6", WeightFormat::f32, kF, kP, 4, 6, Regime::any, "neon", "", 0, gemm<FmaOps, F32Weights>},
    {"gemm_bf16_f32__neon_4x6", WeightFormat::bf16, kF, kP, 4, 6, Regime::any, "neon", "", 0, gemm<FmaOps, Bf16Weights>},
    {"gemm_f16_f32__neon_4x6", WeightFormat::f16, kF, kP, 4, 6, Regime::any, "neon", "", 0, gemm<FmaOps, F16Weights>},
    {"gemm_mxfp4_f32__neon_4x6_panel", WeightFormat::mxfp4, kF, kP, 4, 6, Regime::prefill, "neon", "", 16,
     gemm_decoded<FmaOps, F32Weights, DecodeToF32<Mxfp4Weights>>},
    {"gemm_mxfp4_f32__neon_4x6", WeightFormat::mxfp4, kF, kP, 4, 6, Regime::decode, "neon", "", 0, gemm<FmaOps, Mxfp4Weights>},
    {"gemm_int8_f32__neon_4x6_panel", WeightFormat::int8, kF, kP, 4, 6, Regime::prefill, "neon", "", 16,
     gemm_decoded<FmaOps, F32Weights, DecodeToF32<Int8Weights>>},
    {"gemm_int8_f32__neon_4x6", WeightFormat::int8, kF, kP, 4, 6, Regime::decode, "neon", "", 0, gemm<FmaOps, Int8Weights>},
};

}  // namespace

UKernelList neon_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
