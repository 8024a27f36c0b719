// SVE micro-kernels, vector-length agnostic (Graviton 3: 256-bit; Graviton 4, Grace: 128-bit;
// A64FX: 512-bit). Compiled with -march=armv8.2-a+sve; a kernel runs only after the registry
// has seen the CPU's SVE (HWCAP_SVE). The tile and the weight decoders are in sve/weights.h;
// the bf16 dot products (BFDOT) in gemm_bf16.cpp. ODR rule: ukernel/ukernel.h.
#include <arm_sve.h>

#include "ukernel/sve/weights.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

// Decodes a whole panel into a dense f32 panel (format/panel.h) for prefill, in the steps of
// the tile walk.
template <typename Weights>
struct DecodeToF32 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    float* out = reinterpret_cast<float*>(dense);
    const size_t lanes = svcntw();
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        float* row = out + (c * kPanelRows + r) * kPanelDepth;
        for (size_t j = 0; j < kPanelDepth; j = sve_next_step(j, lanes, kPanelDepth)) {
          const svbool_t pg = svwhilelt_b32_u64(j, sve_step_stop(j, kPanelDepth));
          svst1_f32(pg, row + j, chunk.load(pg, r, j));
        }
      }
    }
  }
};

constexpr auto kF = DType::f32;
constexpr auto kP = PanelLayout::p4x32;

// Best first for each format: the prefill kernel that decodes a panel once, then the kernel
// reading the panels directly.
const UKernel kKernels[] = {
    {"gemm_f32_f32__sve_4x4", WeightFormat::f32, kF, kP, 4, 4, Regime::any, "sve", "", 0, sve_gemm<FmaTile<F32Weights>>},
    {"gemm_bf16_f32__sve_4x4", WeightFormat::bf16, kF, kP, 4, 4, Regime::any, "sve", "", 0, sve_gemm<FmaTile<Bf16Weights>>},
    {"gemm_f16_f32__sve_4x4", WeightFormat::f16, kF, kP, 4, 4, Regime::any, "sve", "", 0, sve_gemm<FmaTile<F16Weights>>},
    {"gemm_mxfp4_f32__sve_4x4_panel", WeightFormat::mxfp4, kF, kP, 4, 4, Regime::prefill, "sve", "", 16,
     sve_gemm_decoded<FmaTile<F32Weights>, DecodeToF32<Mxfp4Weights>>},
    {"gemm_mxfp4_f32__sve_4x4", WeightFormat::mxfp4, kF, kP, 4, 4, Regime::decode, "sve", "", 0,
     sve_gemm<FmaTile<Mxfp4Weights>>},
    {"gemm_int8_f32__sve_4x4_panel", WeightFormat::int8, kF, kP, 4, 4, Regime::prefill, "sve", "", 16,
     sve_gemm_decoded<FmaTile<F32Weights>, DecodeToF32<Int8Weights>>},
    {"gemm_int8_f32__sve_4x4", WeightFormat::int8, kF, kP, 4, 4, Regime::decode, "sve", "", 0, sve_gemm<FmaTile<Int8Weights>>},
};

}  // namespace

UKernelList sve_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
