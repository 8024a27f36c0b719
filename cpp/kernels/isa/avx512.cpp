// AVX-512 kernels (F, BW, VL, DQ; BF16 where present). Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16; only called after dispatch.cpp has
// checked the CPU and OS support these. See kernel_table.h for the ODR rule of this file.
#include <immintrin.h>

#include "kernel_table.h"

namespace moe {
namespace isa {

namespace {

// Tile of kRows weight rows x kTokens token rows: 4 x 6 = 24 accumulators of the 32 zmm
// registers, leaving room for the 4 weight vectors and the token vector in flight. Each weight
// load feeds 6 FMAs and each token load 4, so L1 bandwidth keeps up with the FMA units.
constexpr size_t kRows = 4;
constexpr size_t kTokens = 6;

inline __mmask16 tail_mask16(size_t left) { return static_cast<__mmask16>((1u << left) - 1); }
inline __mmask32 tail_mask32(size_t left) {
  return static_cast<__mmask32>(left >= 32 ? 0xffffffffu : (1u << left) - 1);
}

// Loads 16 elements (or the first `left` under a mask, zero-filling) as f32.
struct LoadF32 {
  static constexpr size_t kStep = 16;
  static __m512 full(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 part(const float* p, size_t left) { return _mm512_maskz_loadu_ps(tail_mask16(left), p); }
};
struct LoadBf16 {
  static constexpr size_t kStep = 16;
  static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 full(const uint16_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static __m512 part(const uint16_t* p, size_t left) { return widen(_mm256_maskz_loadu_epi16(tail_mask16(left), p)); }
};

// R x T tile, f32 FMAs: weights through WL (f32 or widened bf16), tokens f32.
template <size_t R, size_t T, typename WL, typename W>
void tile_fma(const W* w, size_t stride, const float* const* x, size_t n, float* out, size_t tokens) {
  __m512 acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + WL::kStep <= n; i += WL::kStep) {
    __m512 wv[R];
    for (size_t r = 0; r < R; ++r) wv[r] = WL::full(w + r * stride + i);
    for (size_t t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x[t] + i);
      for (size_t r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if (i < n) {
    const size_t left = n - i;
    __m512 wv[R];
    for (size_t r = 0; r < R; ++r) wv[r] = WL::part(w + r * stride + i, left);
    for (size_t t = 0; t < T; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(tail_mask16(left), x[t] + i);
      for (size_t r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) out[r * tokens + t] = _mm512_reduce_add_ps(acc[r][t]);
}

// R x T tile, vdpbf16ps: 32 bf16 products per instruction, pairs (i, i+1) summed into f32.
template <size_t R, size_t T>
void tile_bf16_dot(const uint16_t* w, size_t stride, const uint16_t* const* x, size_t n, float* out,
                   size_t tokens) {
  __m512 acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  size_t i = 0;
  for (; i < n; i += 32) {
    const __mmask32 m = tail_mask32(n - i);
    __m512i wv[R];
    for (size_t r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi16(m, w + r * stride + i);
    for (size_t t = 0; t < T; ++t) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x[t] + i);
      for (size_t r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], xv);
    }
  }
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) out[r * tokens + t] = _mm512_reduce_add_ps(acc[r][t]);
}

// Walks the rows x tokens grid in tiles; edge tiles use smaller instantiations so every
// (row, token) sum follows the same instruction sequence.
template <size_t R, typename Tile>
void rows_for_tokens(size_t rows, size_t tokens, Tile&& tile) {
  // tile.template run<R2, T2>(r0, t0)
  for (size_t r0 = 0; r0 < rows; r0 += R) {
    const size_t rn = rows - r0 < R ? rows - r0 : R;
    for (size_t t0 = 0; t0 < tokens; t0 += kTokens) {
      const size_t tn = tokens - t0 < kTokens ? tokens - t0 : kTokens;
      tile(r0, rn, t0, tn);
    }
  }
}

// Dispatches a runtime (rows, tokens) tile size to the template instantiation.
template <template <size_t, size_t> class Op, typename... Args>
void run_tile(size_t rn, size_t tn, Args... args) {
#define MOE_TILE_T(R)                                  \
  switch (tn) {                                        \
    case 1: Op<R, 1>::run(args...); return;            \
    case 2: Op<R, 2>::run(args...); return;            \
    case 3: Op<R, 3>::run(args...); return;            \
    case 4: Op<R, 4>::run(args...); return;            \
    case 5: Op<R, 5>::run(args...); return;            \
    default: Op<R, 6>::run(args...); return;           \
  }
  switch (rn) {
    case 1: MOE_TILE_T(1)
    case 2: MOE_TILE_T(2)
    case 3: MOE_TILE_T(3)
    default: MOE_TILE_T(4)
  }
#undef MOE_TILE_T
}

template <typename W, typename WL>
struct FmaTile {
  template <size_t R, size_t T>
  struct Op {
    static void run(const W* w, size_t stride, const float* const* x, size_t n, float* out, size_t tokens) {
      tile_fma<R, T, WL>(w, stride, x, n, out, tokens);
    }
  };
};

template <size_t R, size_t T>
struct Bf16DotOp {
  static void run(const uint16_t* w, size_t stride, const uint16_t* const* x, size_t n, float* out,
                  size_t tokens) {
    tile_bf16_dot<R, T>(w, stride, x, n, out, tokens);
  }
};

template <typename W, typename WL>
void dot_fma(const W* w, size_t stride, size_t rows, const float* const* x, size_t tokens, size_t n,
             float* out) {
  rows_for_tokens<kRows>(rows, tokens, [&](size_t r0, size_t rn, size_t t0, size_t tn) {
    run_tile<FmaTile<W, WL>::template Op>(rn, tn, w + r0 * stride, stride, x + t0, n, out + r0 * tokens + t0,
                                          tokens);
  });
}

void dot_f32_f32(const float* w, size_t stride, size_t rows, const float* const* x, size_t tokens,
                 size_t n, float* out) {
  dot_fma<float, LoadF32>(w, stride, rows, x, tokens, n, out);
}

void dot_bf16_f32(const uint16_t* w, size_t stride, size_t rows, const float* const* x,
                  size_t tokens, size_t n, float* out) {
  dot_fma<uint16_t, LoadBf16>(w, stride, rows, x, tokens, n, out);
}

void dot_bf16_bf16(const uint16_t* w, size_t stride, size_t rows, const uint16_t* const* x,
                   size_t tokens, size_t n, float* out) {
  rows_for_tokens<kRows>(rows, tokens, [&](size_t r0, size_t rn, size_t t0, size_t tn) {
    run_tile<Bf16DotOp>(rn, tn, w + r0 * stride, stride, x + t0, n, out + r0 * tokens + t0, tokens);
  });
}

}  // namespace

const KernelTable& avx512_table(bool with_bf16_dot) {
  static const KernelTable plain = {"avx512", dot_f32_f32, dot_bf16_f32, nullptr};
  static const KernelTable bf16 = {"avx512", dot_f32_f32, dot_bf16_f32, dot_bf16_bf16};
  return with_bf16_dot ? bf16 : plain;
}

}  // namespace isa
}  // namespace moe
