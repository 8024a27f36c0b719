// NEON (Advanced SIMD) kernels for every arm64 CPU: baseline armv8-a, compiled with
// -march=armv8-a. The bf16 dot products (BFDOT) live in neon_bf16.cpp, compiled with +bf16 and
// put in the table only when the CPU has them. See kernel_table.h for the ODR rule.
#include <arm_neon.h>

#include "panel_walk.h"

namespace moe {
namespace isa {

namespace {

// Fully unrolled tile loops (constant indices only) let GCC keep the accumulator arrays in
// registers; without it GCC 12 keeps them on the stack.
#define MOE_UNROLL _Pragma("GCC unroll 8")

// f32 lanes of a q register.
constexpr size_t kStep = 4;

inline float32x4_t load_w(const float* p) { return vld1q_f32(p); }
inline float32x4_t load_w(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

// x[0 .. kStep), zero past `left` lanes; nothing past them is read.
inline float32x4_t load_x(const float* p, size_t left) {
  if (left >= kStep) return vld1q_f32(p);
  float part[kStep] = {};
  for (size_t i = 0; i < left; ++i) part[i] = p[i];
  return vld1q_f32(part);
}

// 4 rows (one panel) x T tokens of f32 FMAs, bf16 weights widened in registers. 4 x 6 = 24
// accumulators, 4 weight vectors and the token vector fill the 32 v registers; each weight
// load feeds 6 FMAs and each token load 4. A (row, token) sum keeps lane l for the depths
// j = l (mod 4) and is reduced once at the end (vaddvq), whatever T is.
template <typename W>
struct FmaTile {
  static constexpr size_t kTokens = 6;

  template <size_t T>
  static void run(const W* panel, const float* const* x, size_t n, float* out, size_t tokens,
                  size_t rows) {
    float32x4_t acc[kPanelRows][T];
    MOE_UNROLL
    for (size_t r = 0; r < kPanelRows; ++r)
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    for (size_t k = 0; k < n; k += kPanelDepth) {
      const W* chunk = panel + k * kPanelRows;
      const size_t end = n - k < kPanelDepth ? n - k : kPanelDepth;
      for (size_t j = 0; j < end; j += kStep) {
        float32x4_t wv[kPanelRows];
        MOE_UNROLL
        for (size_t r = 0; r < kPanelRows; ++r) wv[r] = load_w(chunk + r * kPanelDepth + j);
        MOE_UNROLL
        for (size_t t = 0; t < T; ++t) {
          const float32x4_t xv = load_x(x[t] + k + j, end - j);
          MOE_UNROLL
          for (size_t r = 0; r < kPanelRows; ++r) acc[r][t] = vfmaq_f32(acc[r][t], wv[r], xv);
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

void dot_f32_f32(const float* w, size_t padded_depth, size_t rows, const float* const* x,
                 size_t tokens, size_t n, float* out) {
  walk_panels<FmaTile<float>>(w, padded_depth, rows, x, tokens, n, out);
}

void dot_bf16_f32(const uint16_t* w, size_t padded_depth, size_t rows, const float* const* x,
                  size_t tokens, size_t n, float* out) {
  walk_panels<FmaTile<uint16_t>>(w, padded_depth, rows, x, tokens, n, out);
}

}  // namespace

const KernelTable& neon_table(bool with_bf16_dot) {
  static const KernelTable plain = {"neon", dot_f32_f32, dot_bf16_f32, nullptr};
  static const KernelTable bf16 = {"neon", dot_f32_f32, dot_bf16_f32, dot_bf16_bf16_neon_bfdot};
  return with_bf16_dot ? bf16 : plain;
}

}  // namespace isa
}  // namespace moe
