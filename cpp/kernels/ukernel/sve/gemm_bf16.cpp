// SVE bf16 dot products (BFDOT), vector-length agnostic like sve.cpp. Compiled with
// -march=armv8.2-a+sve+bf16; only called through sve_table(true), which dispatch.cpp picks
// when HWCAP2_SVEBF16 is set (Graviton 3 and 4, Grace; not A64FX). See kernel_table.h for the
// ODR rule.
#include <arm_sve.h>

#include "panel_walk.h"

namespace moe {
namespace isa {

namespace {

inline svbfloat16_t load_bf16(svbool_t pg, const uint16_t* p) {
  return svreinterpret_bf16_u16(svld1_u16(pg, p));
}

// a_r += pairwise products of w_r and x (BFDOT: f32 lane l adds bf16 pair (2l, 2l + 1)).
// Lanes the predicate left out are zero in both w and x.
inline void bfdot_rows(svbfloat16_t x, svbfloat16_t w0, svbfloat16_t w1, svbfloat16_t w2,
                       svbfloat16_t w3, svfloat32_t& a0, svfloat32_t& a1, svfloat32_t& a2,
                       svfloat32_t& a3) {
  a0 = svbfdot_f32(a0, w0, x);
  a1 = svbfdot_f32(a1, w1, x);
  a2 = svbfdot_f32(a2, w2, x);
  a3 = svbfdot_f32(a3, w3, x);
}

// out[r * tokens] = sum of a_r's lanes (FADDV, a fixed order) for the first `rows` rows.
inline void store_rows(float* out, size_t tokens, size_t rows, svfloat32_t a0, svfloat32_t a1,
                       svfloat32_t a2, svfloat32_t a3) {
  const svbool_t all = svptrue_b32();
  const float sums[kPanelRows] = {svaddv_f32(all, a0), svaddv_f32(all, a1), svaddv_f32(all, a2),
                                  svaddv_f32(all, a3)};
  for (size_t r = 0; r < rows; ++r) out[r * tokens] = sums[r];
}

// 4 rows (one panel) x T <= 4 tokens; the register budget and naming of sve.cpp's FmaTile.
struct BfdotTile {
  static constexpr size_t kTokens = 4;

  template <size_t T>
  static void run(const uint16_t* panel, const uint16_t* const* x, size_t n, float* out,
                  size_t tokens, size_t rows) {
    const svfloat32_t zero = svdup_n_f32(0.0f);
    svfloat32_t a0_0 = zero, a0_1 = zero, a0_2 = zero, a0_3 = zero;
    [[maybe_unused]] svfloat32_t a1_0 = zero, a1_1 = zero, a1_2 = zero, a1_3 = zero;
    [[maybe_unused]] svfloat32_t a2_0 = zero, a2_1 = zero, a2_2 = zero, a2_3 = zero;
    [[maybe_unused]] svfloat32_t a3_0 = zero, a3_1 = zero, a3_2 = zero, a3_3 = zero;
    const size_t lanes = svcnth();
    for (size_t k = 0; k < n; k += kPanelDepth) {
      const uint16_t* chunk = panel + k * kPanelRows;
      const size_t end = n - k < kPanelDepth ? n - k : kPanelDepth;
      for (size_t j = 0; j < end; j += lanes) {
        const svbool_t pg = svwhilelt_b16_u64(j, end);
        const svbfloat16_t w0 = load_bf16(pg, chunk + j);
        const svbfloat16_t w1 = load_bf16(pg, chunk + kPanelDepth + j);
        const svbfloat16_t w2 = load_bf16(pg, chunk + 2 * kPanelDepth + j);
        const svbfloat16_t w3 = load_bf16(pg, chunk + 3 * kPanelDepth + j);
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

}  // namespace

void dot_bf16_bf16_sve_bfdot(const uint16_t* panels, size_t padded_depth, size_t rows,
                             const uint16_t* const* x, size_t tokens, size_t n, float* out) {
  walk_panels<BfdotTile>(panels, padded_depth, rows, x, tokens, n, out);
}

}  // namespace isa
}  // namespace moe
