// NEON bf16 dot products (BFDOT, Armv8.6 FEAT_BF16: Graviton 3 and 4, Grace, AmpereOne, Apple
// M2 and later). Compiled with -march=armv8.2-a+bf16; only called through neon_table(true),
// which dispatch.cpp picks when HWCAP2_BF16 is set. See kernel_table.h for the ODR rule.
#include <arm_neon.h>

#include "panel_walk.h"

namespace moe {
namespace isa {

namespace {

// Fully unrolled tile loops (constant indices only) let GCC keep the accumulator arrays in
// registers; without it GCC 12 keeps them on the stack.
#define MOE_UNROLL _Pragma("GCC unroll 8")

// bf16 lanes of a q register: 4 pairs, one per f32 accumulator lane.
constexpr size_t kStep = 8;

inline bfloat16x8_t load_bf16(const uint16_t* p) { return vreinterpretq_bf16_u16(vld1q_u16(p)); }

// x[0 .. kStep), zero past `left` lanes; nothing past them is read.
inline bfloat16x8_t load_x(const uint16_t* p, size_t left) {
  if (left >= kStep) return load_bf16(p);
  uint16_t part[kStep] = {};
  for (size_t i = 0; i < left; ++i) part[i] = p[i];
  return load_bf16(part);
}

// 4 rows (one panel) x T tokens, BFDOT: lane l of a (row, token) accumulator adds the pair
// (2l, 2l + 1) of each 8-element step. Same register budget as neon.cpp's FmaTile.
struct BfdotTile {
  static constexpr size_t kTokens = 6;

  template <size_t T>
  static void run(const uint16_t* panel, const uint16_t* const* x, size_t n, float* out,
                  size_t tokens, size_t rows) {
    float32x4_t acc[kPanelRows][T];
    MOE_UNROLL
    for (size_t r = 0; r < kPanelRows; ++r)
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    for (size_t k = 0; k < n; k += kPanelDepth) {
      const uint16_t* chunk = panel + k * kPanelRows;
      const size_t end = n - k < kPanelDepth ? n - k : kPanelDepth;
      for (size_t j = 0; j < end; j += kStep) {
        bfloat16x8_t wv[kPanelRows];
        MOE_UNROLL
        for (size_t r = 0; r < kPanelRows; ++r) wv[r] = load_bf16(chunk + r * kPanelDepth + j);
        MOE_UNROLL
        for (size_t t = 0; t < T; ++t) {
          const bfloat16x8_t xv = load_x(x[t] + k + j, end - j);
          MOE_UNROLL
          for (size_t r = 0; r < kPanelRows; ++r) acc[r][t] = vbfdotq_f32(acc[r][t], wv[r], xv);
        }
      }
    }
    MOE_UNROLL
    for (size_t r = 0; r < kPanelRows; ++r) {
      if (r >= rows) break;
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) out[r * tokens + t] = vaddvq_f32(acc[r][t]);
    }
  }
};

}  // namespace

void dot_bf16_bf16_neon_bfdot(const uint16_t* panels, size_t padded_depth, size_t rows,
                              const uint16_t* const* x, size_t tokens, size_t n, float* out) {
  walk_panels<BfdotTile>(panels, padded_depth, rows, x, tokens, n, out);
}

}  // namespace isa
}  // namespace moe
