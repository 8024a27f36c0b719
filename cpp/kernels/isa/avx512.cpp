// AVX-512 kernels (F, BW, VL, DQ; BF16 where present). Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16; only called after dispatch.cpp has
// checked the CPU and OS support these. See kernel_table.h for the ODR rule of this file.
// GCC 12 reports false -W(maybe-)uninitialized warnings inside its own AVX-512 intrinsics
// (the `__Y = __Y` idiom of avx512fintrin.h) at some optimisation settings.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "kernel_table.h"
#include "panel_walk.h"

namespace moe {
namespace isa {

namespace {

// Fully unrolled tile loops let the compiler keep the accumulator arrays in registers
// (without it GCC 12 spills them to the stack on every step).
#define MOE_UNROLL _Pragma("GCC unroll 8")

// Tile of one panel (kPanelRows = 4 weight rows) x kTileTokens token rows: 24 accumulators of the
// 32 zmm registers, leaving room for the weight vectors and the token vector in flight. Each
// weight load feeds 6 FMAs and each token load 4, so L1 bandwidth keeps up with the FMA units.
constexpr size_t kTileTokens = 6;

// Lanes of a 32-element chunk that lie below n, for the activation loads (weights are
// zero-padded in the panels and need no mask).
inline __mmask32 chunk_mask(size_t k, size_t n) {
  const size_t left = n - k;
  return left >= 32 ? 0xffffffffu : static_cast<__mmask32>((1u << left) - 1);
}

// When decoding, the panel stream comes from memory: ask for it this many chunks ahead so
// its latency hides behind the current ones (4 KB of bf16; measured ~5% more bandwidth than
// 1-2 KB).
constexpr size_t kPrefetchChunks = 16;

// Prefetches chunk + kPrefetchChunks, one request per cache line of its `bytes`.
inline void prefetch_ahead(const void* chunk, size_t bytes) {
  const char* p = static_cast<const char*>(chunk) + kPrefetchChunks * bytes;
  for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

// Fixed-order horizontal sum (GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized).
inline float hsum(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}

// Half (16 elements) of a 32-element chunk of a weight row, as f32.
inline __m512 load_half(const float* w, size_t half) { return _mm512_loadu_ps(w + 16 * half); }
inline __m512 load_half(const uint16_t* w, size_t half) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16 * half));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// The rows of one panel x T tokens (the first `rows` stored), f32 FMAs (bf16 weights widened in registers). Each chunk
// is done in two halves so only R weight vectors are live next to the R x T accumulators.
template <size_t T, typename W>
void tile_fma(const W* panel, const float* const* x, size_t n, float* out, size_t tokens, size_t rows) {
  constexpr size_t R = kPanelRows;
  __m512 acc[R][T];
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (size_t k = 0; k < n; k += kPanelDepth) {
    const W* chunk = panel + k * kPanelRows;
    prefetch_ahead(chunk, kPanelRows * kPanelDepth * sizeof(W));
    const __mmask32 m = chunk_mask(k, n);
    MOE_UNROLL
    for (size_t half = 0; half < 2; ++half) {
      __m512 wv[R];
      MOE_UNROLL
      for (size_t r = 0; r < R; ++r) wv[r] = load_half(chunk + r * kPanelDepth, half);
      const __mmask16 mh = static_cast<__mmask16>(m >> (16 * half));
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) {
        const __m512 xv = _mm512_maskz_loadu_ps(mh, x[t] + k + 16 * half);
        MOE_UNROLL
        for (size_t r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
      }
    }
  }
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) {
      if (r < rows) out[r * tokens + t] = hsum(acc[r][t]);
    }
}

// The rows of one panel x T tokens (the first `rows` stored), vdpbf16ps: 32 bf16 products per instruction, pairs
// (i, i+1) summed into f32 lanes.
template <size_t T>
void tile_bf16_dot(const uint16_t* panel, const uint16_t* const* x, size_t n, float* out, size_t tokens,
                   size_t rows) {
  constexpr size_t R = kPanelRows;
  __m512 acc[R][T];
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  for (size_t k = 0; k < n; k += kPanelDepth) {
    const uint16_t* chunk = panel + k * kPanelRows;
    prefetch_ahead(chunk, kPanelRows * kPanelDepth * sizeof(uint16_t));
    const __mmask32 m = chunk_mask(k, n);
    __m512bh wv[R];
    MOE_UNROLL
    for (size_t r = 0; r < R; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(chunk + r * kPanelDepth);
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x[t] + k);
      MOE_UNROLL
      for (size_t r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) {
      if (r < rows) out[r * tokens + t] = hsum(acc[r][t]);
    }
}

// Tiles for walk_panels (panel_walk.h): all kPanelRows rows of a panel x T tokens.
template <typename W>
struct FmaTile {
  static constexpr size_t kTokens = kTileTokens;
  template <size_t T>
  static void run(const W* panel, const float* const* x, size_t n, float* out, size_t tokens, size_t rows) {
    tile_fma<T>(panel, x, n, out, tokens, rows);
  }
};
struct Bf16DotTile {
  static constexpr size_t kTokens = kTileTokens;
  template <size_t T>
  static void run(const uint16_t* panel, const uint16_t* const* x, size_t n, float* out, size_t tokens,
                  size_t rows) {
    tile_bf16_dot<T>(panel, x, n, out, tokens, rows);
  }
};

void dot_f32_f32(const float* w, size_t padded_depth, size_t rows, const float* const* x, size_t tokens,
                 size_t n, float* out) {
  walk_panels<FmaTile<float>>(w, padded_depth, rows, x, tokens, n, out);
}

void dot_bf16_f32(const uint16_t* w, size_t padded_depth, size_t rows, const float* const* x,
                  size_t tokens, size_t n, float* out) {
  walk_panels<FmaTile<uint16_t>>(w, padded_depth, rows, x, tokens, n, out);
}

void dot_bf16_bf16(const uint16_t* w, size_t padded_depth, size_t rows, const uint16_t* const* x,
                   size_t tokens, size_t n, float* out) {
  walk_panels<Bf16DotTile>(w, padded_depth, rows, x, tokens, n, out);
}

}  // namespace

const KernelTable& avx512_table(bool with_bf16_dot) {
  static const KernelTable plain = {"avx512", dot_f32_f32, dot_bf16_f32, nullptr};
  static const KernelTable bf16 = {"avx512", dot_f32_f32, dot_bf16_f32, dot_bf16_bf16};
  return with_bf16_dot ? bf16 : plain;
}

}  // namespace isa
}  // namespace moe
