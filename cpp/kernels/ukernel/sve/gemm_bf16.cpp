// SVE bf16 micro-kernels (BFDOT), vector-length agnostic like gemm.cpp, all prefill. Compiled
// with -march=armv8.2-a+sve+bf16; each kernel needs the "svebf16" feature (HWCAP2_SVEBF16:
// Graviton 3 and 4, Grace; not A64FX), which the registry checks before running it. ODR rule:
// ukernel/ukernel.h.
#include <arm_sve.h>

#include "ukernel/sve/weights.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

inline svbfloat16_t load_bf16(svbool_t pg, const uint16_t* p) { return svreinterpret_bf16_u16(svld1_u16(pg, p)); }

// a_r += pairwise products of w_r and x (BFDOT: f32 lane l adds bf16 pair (2l, 2l + 1)).
// Lanes the predicate left out are zero in both w and x.
inline void bfdot_rows(svbfloat16_t x, svbfloat16_t w0, svbfloat16_t w1, svbfloat16_t w2, svbfloat16_t w3,
                       svfloat32_t& a0, svfloat32_t& a1, svfloat32_t& a2, svfloat32_t& a3) {
  a0 = svbfdot_f32(a0, w0, x);
  a1 = svbfdot_f32(a1, w1, x);
  a2 = svbfdot_f32(a2, w2, x);
  a3 = svbfdot_f32(a3, w3, x);
}

// 4 rows (one panel of dense bf16) x T <= 4 tokens, the register budget and naming of
// weights.h's fma_tile. A chunk is walked in steps of svcnth() halfwords: nothing is decoded,
// so no step needs to stay inside a half.
struct BfdotTile {
  using X = uint16_t;
  static constexpr size_t kChunkElements = kPanelRows * kPanelDepth;

  template <size_t T>
  static void run(const uint8_t* panel, size_t, const uint16_t* const* x, size_t n, float* out, size_t tokens,
                  size_t rows) {
    const svfloat32_t zero = svdup_n_f32(0.0f);
    svfloat32_t a0_0 = zero, a0_1 = zero, a0_2 = zero, a0_3 = zero;
    [[maybe_unused]] svfloat32_t a1_0 = zero, a1_1 = zero, a1_2 = zero, a1_3 = zero;
    [[maybe_unused]] svfloat32_t a2_0 = zero, a2_1 = zero, a2_2 = zero, a2_3 = zero;
    [[maybe_unused]] svfloat32_t a3_0 = zero, a3_1 = zero, a3_2 = zero, a3_3 = zero;
    const uint16_t* w = reinterpret_cast<const uint16_t*>(panel);
    const size_t lanes = svcnth();
    for (size_t k = 0; k < n; k += kPanelDepth) {
      const uint16_t* chunk = w + k / kPanelDepth * kChunkElements;
      const size_t end = n - k < kPanelDepth ? n - k : kPanelDepth;
      for (size_t j = 0; j < end; j += lanes) {
        const svbool_t pg = svwhilelt_b16_u64(j, end);
        const svbfloat16_t w0 = load_bf16(pg, chunk + j), w1 = load_bf16(pg, chunk + kPanelDepth + j),
                           w2 = load_bf16(pg, chunk + 2 * kPanelDepth + j), w3 = load_bf16(pg, chunk + 3 * kPanelDepth + j);
        const size_t at = k + j;
        bfdot_rows(load_bf16(pg, x[0] + at), w0, w1, w2, w3, a0_0, a0_1, a0_2, a0_3);
        if constexpr (T > 1) bfdot_rows(load_bf16(pg, x[1] + at), w0, w1, w2, w3, a1_0, a1_1, a1_2, a1_3);
        if constexpr (T > 2) bfdot_rows(load_bf16(pg, x[2] + at), w0, w1, w2, w3, a2_0, a2_1, a2_2, a2_3);
        if constexpr (T > 3) bfdot_rows(load_bf16(pg, x[3] + at), w0, w1, w2, w3, a3_0, a3_1, a3_2, a3_3);
      }
    }
    store_rows(out, tokens, rows, a0_0, a0_1, a0_2, a0_3);
    if constexpr (T > 1) store_rows(out + 1, tokens, rows, a1_0, a1_1, a1_2, a1_3);
    if constexpr (T > 2) store_rows(out + 2, tokens, rows, a2_0, a2_1, a2_2, a2_3);
    if constexpr (T > 3) store_rows(out + 3, tokens, rows, a3_0, a3_1, a3_2, a3_3);
  }
};

// Decodes a whole panel to f32 (weights.h) and rounds it to a dense bf16 panel (BFCVT, to
// nearest even; each result in the low half of its 32-bit lane, stored by ST1H) for prefill.
template <typename Weights>
struct DecodeToBf16 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    uint16_t* out = reinterpret_cast<uint16_t*>(dense);
    const size_t lanes = svcntw();
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        uint16_t* row = out + (c * kPanelRows + r) * kPanelDepth;
        for (size_t j = 0; j < kPanelDepth; j = sve_next_step(j, lanes, kPanelDepth)) {
          const svbool_t pg = svwhilelt_b32_u64(j, sve_step_stop(j, kPanelDepth));
          const svbfloat16_t b = svcvt_bf16_f32_x(pg, chunk.load(pg, r, j));
          svst1h_u32(pg, row + j, svreinterpret_u32_bf16(b));
        }
      }
    }
  }
};

constexpr auto kB = DType::bf16;
constexpr auto kP = PanelLayout::p4x32;
constexpr auto kPrefill = Regime::prefill;

const UKernel kKernels[] = {
    {"gemm_bf16_bf16__svebf16_4x4", WeightFormat::bf16, kB, kP, 4, 4, kPrefill, "sve", "svebf16", 0,
     sve_gemm<BfdotTile>},
    {"gemm_f16_bf16__svebf16_4x4_panel", WeightFormat::f16, kB, kP, 4, 4, kPrefill, "sve", "svebf16", 8,
     sve_gemm_decoded<BfdotTile, DecodeToBf16<F16Weights>>},
    {"gemm_mxfp4_bf16__svebf16_4x4_panel", WeightFormat::mxfp4, kB, kP, 4, 4, kPrefill, "sve", "svebf16", 8,
     sve_gemm_decoded<BfdotTile, DecodeToBf16<Mxfp4Weights>>},
    {"gemm_int8_bf16__svebf16_4x4_panel", WeightFormat::int8, kB, kP, 4, 4, kPrefill, "sve", "svebf16", 8,
     sve_gemm_decoded<BfdotTile, DecodeToBf16<Int8Weights>>},
};

}  // namespace

UKernelList sve_bf16_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
