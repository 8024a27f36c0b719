// AVX2 + FMA kernels (every x86-64 server since 2013). Compiled with -mavx2 -mfma -mf16c; only
// called after dispatch.cpp has checked the CPU and OS support them. See kernel_table.h for
// the ODR rule of this file.
#include <immintrin.h>

#include "kernel_table.h"

namespace moe {
namespace isa {

namespace {

// Tile of kRows weight rows x kTokens token rows: 4 x 3 = 12 accumulators of the 16 ymm
// registers, plus the weight vectors and one token vector in flight.
constexpr size_t kRows = 4;
constexpr size_t kTokens = 3;
constexpr size_t kStep = 8;

inline __m256 load_w(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load_w(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  const __m128i h = _mm_cvtsi32_si128(static_cast<int>(v) << 16);
  return _mm_cvtss_f32(_mm_castsi128_ps(h));
}

// Fixed-order horizontal sum of 8 lanes.
inline float reduce(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

template <size_t R, size_t T, typename W>
void tile(const W* w, size_t stride, const float* const* x, size_t n, float* out, size_t tokens) {
  __m256 acc[R][T];
  for (size_t r = 0; r < R; ++r)
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + kStep <= n; i += kStep) {
    __m256 wv[R];
    for (size_t r = 0; r < R; ++r) wv[r] = load_w(w + r * stride + i);
    for (size_t t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + i);
      for (size_t r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (size_t r = 0; r < R; ++r) {
    for (size_t t = 0; t < T; ++t) {
      float sum = reduce(acc[r][t]);
      for (size_t j = i; j < n; ++j) sum = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(widen(w[r * stride + j])), _mm_set_ss(x[t][j]), _mm_set_ss(sum)));
      out[r * tokens + t] = sum;
    }
  }
}

template <size_t R, typename W>
void tile_tokens(size_t tn, const W* w, size_t stride, const float* const* x, size_t n, float* out, size_t tokens) {
  switch (tn) {
    case 1: return tile<R, 1>(w, stride, x, n, out, tokens);
    case 2: return tile<R, 2>(w, stride, x, n, out, tokens);
    default: return tile<R, 3>(w, stride, x, n, out, tokens);
  }
}

template <typename W>
void dot_rows(const W* w, size_t stride, size_t rows, const float* const* x, size_t tokens, size_t n,
              float* out) {
  for (size_t r0 = 0; r0 < rows; r0 += kRows) {
    const size_t rn = rows - r0 < kRows ? rows - r0 : kRows;
    for (size_t t0 = 0; t0 < tokens; t0 += kTokens) {
      const size_t tn = tokens - t0 < kTokens ? tokens - t0 : kTokens;
      const W* wr = w + r0 * stride;
      float* o = out + r0 * tokens + t0;
      switch (rn) {
        case 1: tile_tokens<1>(tn, wr, stride, x + t0, n, o, tokens); break;
        case 2: tile_tokens<2>(tn, wr, stride, x + t0, n, o, tokens); break;
        case 3: tile_tokens<3>(tn, wr, stride, x + t0, n, o, tokens); break;
        default: tile_tokens<4>(tn, wr, stride, x + t0, n, o, tokens); break;
      }
    }
  }
}

}  // namespace

const KernelTable& avx2_table() {
  static const KernelTable table = {"avx2", dot_rows<float>, dot_rows<uint16_t>, nullptr};
  return table;
}

}  // namespace isa
}  // namespace moe
