// AVX2 + FMA kernels (every x86-64 server since 2013). Compiled with -mavx2 -mfma -mf16c; only
// called after dispatch.cpp has checked the CPU and OS support them. See kernel_table.h for
// the ODR rule of this file.
#include <immintrin.h>

#include "kernel_table.h"
#include "panel_walk.h"

namespace moe {
namespace isa {

namespace {

// Fully unrolled tile loops let the compiler keep the accumulator arrays in registers
// (without it GCC 12 spills them to the stack on every step).
#define MOE_UNROLL _Pragma("GCC unroll 8")

// Tile of one panel (kPanelRows = 4 weight rows) x kTileTokens token rows: 12 accumulators,
// the 3 token vectors and one weight vector: all 16 ymm registers.
constexpr size_t kTileTokens = 3;
constexpr size_t kStep = 8;

inline __m256 load_w(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load_w(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Activation lanes below n (left < kStep); AVX2 masks are per-lane sign bits.
inline __m256 load_x_part(const float* p, size_t left) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane);
  return _mm256_maskload_ps(p, mask);
}

// Fixed-order horizontal sum of 8 lanes.
inline float reduce(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// The rows of one panel x T tokens (the first `rows` stored). A chunk of kPanelDepth is
// walked in kStep sub-steps; the zero-padded weights make lanes past n contribute nothing
// once x is masked there.
template <size_t T, typename W>
void tile(const W* panel, const float* const* x, size_t n, float* out, size_t tokens, size_t rows) {
  constexpr size_t R = kPanelRows;
  __m256 acc[R][T];
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  for (size_t k = 0; k < n; k += kPanelDepth) {
    const W* chunk = panel + k * kPanelRows;
    for (size_t j = 0; j < kPanelDepth && k + j < n; j += kStep) {
      const size_t left = n - (k + j);
      __m256 xv[T];
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) {
        xv[t] = left >= kStep ? _mm256_loadu_ps(x[t] + k + j) : load_x_part(x[t] + k + j, left);
      }
      MOE_UNROLL
      for (size_t r = 0; r < R; ++r) {
        const __m256 wv = load_w(chunk + r * kPanelDepth + j);
        MOE_UNROLL
        for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, xv[t], acc[r][t]);
      }
    }
  }
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) {
      if (r < rows) out[r * tokens + t] = reduce(acc[r][t]);
    }
}

// Tile for walk_panels (panel_walk.h).
template <typename W>
struct FmaTile {
  static constexpr size_t kTokens = kTileTokens;
  template <size_t T>
  static void run(const W* panel, const float* const* x, size_t n, float* out, size_t tokens, size_t rows) {
    tile<T>(panel, x, n, out, tokens, rows);
  }
};

template <typename W>
void dot_panels(const W* panels, size_t padded_depth, size_t rows, const float* const* x, size_t tokens,
                size_t n, float* out) {
  walk_panels<FmaTile<W>>(panels, padded_depth, rows, x, tokens, n, out);
}

}  // namespace

const KernelTable& avx2_table() {
  static const KernelTable table = {"avx2", dot_panels<float>, dot_panels<uint16_t>, nullptr};
  return table;
}

}  // namespace isa
}  // namespace moe
