// SVE kernels, vector-length agnostic (Graviton 3: 256-bit; Graviton 4, Grace: 128-bit;
// A64FX: 512-bit). Compiled with -march=armv8.2-a+sve; only called after dispatch.cpp has seen
// HWCAP_SVE. The bf16 dot products (BFDOT) live in sve_bf16.cpp. See kernel_table.h for the
// ODR rule.
//
// No code assumes a vector length: a panel chunk (kPanelDepth elements) is walked in steps of
// svcntw() lanes under an svwhilelt predicate, which also stops at n (predicated loads read
// nothing past it and give zeros) and at the chunk's end when a vector is longer than a chunk.
#include <arm_sve.h>

#include "panel_walk.h"

namespace moe {
namespace isa {

namespace {

inline svfloat32_t load_w(svbool_t pg, const float* p) { return svld1_f32(pg, p); }
inline svfloat32_t load_w(svbool_t pg, const uint16_t* p) {
  // Zero-extending halfword loads put each bf16 in the low half of a 32-bit lane.
  return svreinterpret_f32_u32(svlsl_n_u32_x(svptrue_b32(), svld1uh_u32(pg, p), 16));
}

// a_r += w_r * x for the 4 rows of a panel. Lanes the predicate left out are zero in both w
// and x, so the FMAs run on all lanes.
inline void mla_rows(svfloat32_t x, svfloat32_t w0, svfloat32_t w1, svfloat32_t w2,
                     svfloat32_t w3, svfloat32_t& a0, svfloat32_t& a1, svfloat32_t& a2,
                     svfloat32_t& a3) {
  const svbool_t all = svptrue_b32();
  a0 = svmla_f32_x(all, a0, w0, x);
  a1 = svmla_f32_x(all, a1, w1, x);
  a2 = svmla_f32_x(all, a2, w2, x);
  a3 = svmla_f32_x(all, a3, w3, x);
}

// out[r * tokens] = sum of a_r's lanes (FADDV, a fixed order) for the first `rows` rows.
inline void store_rows(float* out, size_t tokens, size_t rows, svfloat32_t a0, svfloat32_t a1,
                       svfloat32_t a2, svfloat32_t a3) {
  const svbool_t all = svptrue_b32();
  const float sums[kPanelRows] = {svaddv_f32(all, a0), svaddv_f32(all, a1), svaddv_f32(all, a2),
                                  svaddv_f32(all, a3)};
  for (size_t r = 0; r < rows; ++r) out[r * tokens] = sums[r];
}

// 4 rows (one panel) x T <= 4 tokens of f32 FMAs, bf16 weights widened in registers: 16
// accumulators, 4 weight vectors and the token vector of the 32 z registers. SVE vectors are
// sizeless (no arrays of them), hence one named accumulator per (row r, token t): a<t>_<r>.
template <typename W>
struct FmaTile {
  static constexpr size_t kTokens = 4;

  template <size_t T>
  static void run(const W* panel, const float* const* x, size_t n, float* out, size_t tokens,
                  size_t rows) {
    const svfloat32_t zero = svdup_n_f32(0.0f);
    svfloat32_t a0_0 = zero, a0_1 = zero, a0_2 = zero, a0_3 = zero;
    [[maybe_unused]] svfloat32_t a1_0 = zero, a1_1 = zero, a1_2 = zero, a1_3 = zero;
    [[maybe_unused]] svfloat32_t a2_0 = zero, a2_1 = zero, a2_2 = zero, a2_3 = zero;
    [[maybe_unused]] svfloat32_t a3_0 = zero, a3_1 = zero, a3_2 = zero, a3_3 = zero;
    const size_t lanes = svcntw();
    for (size_t k = 0; k < n; k += kPanelDepth) {
      const W* chunk = panel + k * kPanelRows;
      const size_t end = n - k < kPanelDepth ? n - k : kPanelDepth;
      for (size_t j = 0; j < end; j += lanes) {
        const svbool_t pg = svwhilelt_b32_u64(j, end);
        const svfloat32_t w0 = load_w(pg, chunk + j);
        const svfloat32_t w1 = load_w(pg, chunk + kPanelDepth + j);
        const svfloat32_t w2 = load_w(pg, chunk + 2 * kPanelDepth + j);
        const svfloat32_t w3 = load_w(pg, chunk + 3 * kPanelDepth + j);
        const size_t at = k + j;
        mla_rows(svld1_f32(pg, x[0] + at), w0, w1, w2, w3, a0_0, a0_1, a0_2, a0_3);
        if constexpr (T > 1) mla_rows(svld1_f32(pg, x[1] + at), w0, w1, w2, w3, a1_0, a1_1, a1_2, a1_3);
        if constexpr (T > 2) mla_rows(svld1_f32(pg, x[2] + at), w0, w1, w2, w3, a2_0, a2_1, a2_2, a2_3);
        if constexpr (T > 3) mla_rows(svld1_f32(pg, x[3] + at), w0, w1, w2, w3, a3_0, a3_1, a3_2, a3_3);
      }
    }
    store_rows(out, tokens, rows, a0_0, a0_1, a0_2, a0_3);
    if constexpr (T > 1) store_rows(out + 1, tokens, rows, a1_0, a1_1, a1_2, a1_3);
    if constexpr (T > 2) store_rows(out + 2, tokens, rows, a2_0, a2_1, a2_2, a2_3);
    if constexpr (T > 3) store_rows(out + 3, tokens, rows, a3_0, a3_1, a3_2, a3_3);
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

const KernelTable& sve_table(bool with_bf16_dot) {
  static const KernelTable plain = {"sve", dot_f32_f32, dot_bf16_f32, nullptr};
  static const KernelTable bf16 = {"sve", dot_f32_f32, dot_bf16_f32, dot_bf16_bf16_sve_bfdot};
  return with_bf16_dot ? bf16 : plain;
}

}  // namespace isa
}  // namespace moe
