// The micro-kernel tile and panel walk, written once over two small per-ISA structs:
//
//   Ops (one per instruction set and activation type):
//     V, X (token element), XV (token vector), kStep (depth per step, divides kPanelDepth),
//     kTokens (widest tile), kWeightsFirst (loop nesting that fits the register file),
//     kPairTokens (up to this many tokens, tiles of two panels: 1 or 2),
//     zero(), load_x(p, left) (zero past `left` elements, nothing past them read),
//     madd(acc, w, x), sum(acc) (fixed-order horizontal sum)
//   Weights (one per weight format and instruction set):
//     WV, kPrefetchChunks, Chunk(panel, padded, c) (per-chunk state: code pointer, scales),
//     chunk.load(r, s) -> WV (step s of row r, decoded in registers), prefetch(panel, padded, c)
//
// A tile computes the kPanelRows rows of one panel against T token rows and stores the first
// `rows` at out[r * tokens + t]. Each (row, token) accumulator sees the same sequence of
// multiply-adds whatever T is, so results do not depend on the tile width. A panel is whole in
// memory, so a tile may compute the rows it does not store.
//
// Included by ISA files only; everything here is in an anonymous namespace, so each file
// compiles its own copy with its own flags (the ODR rule of ukernel/ukernel.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/panel.h"

namespace moe {
namespace ukernel {
namespace {

// Fully unrolled tile loops let the compiler keep the accumulator arrays in registers
// (without it GCC 12 spills them to the stack on every step).
#define MOE_UNROLL _Pragma("GCC unroll 8")

template <typename Ops, typename Weights, size_t T>
void tile(const uint8_t* panel, size_t padded, const typename Ops::X* const* x, size_t n, float* out,
          size_t tokens, size_t rows) {
  constexpr size_t R = kPanelRows;
  typename Ops::V acc[R][T];
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) acc[r][t] = Ops::zero();
  for (size_t k = 0, c = 0; k < n; k += kPanelDepth, ++c) {
    Weights::prefetch(panel, padded, c);
    const typename Weights::Chunk chunk(panel, padded, c);
    const size_t left = n - k;
    MOE_UNROLL
    for (size_t s = 0; s < kPanelDepth / Ops::kStep; ++s) {
      if (s * Ops::kStep >= left) break;
      const size_t at = k + s * Ops::kStep, step_left = left - s * Ops::kStep;
      if constexpr (Ops::kWeightsFirst) {
        typename Weights::WV wv[R];
        MOE_UNROLL
        for (size_t r = 0; r < R; ++r) wv[r] = chunk.load(r, s);
        MOE_UNROLL
        for (size_t t = 0; t < T; ++t) {
          const typename Ops::XV xv = Ops::load_x(x[t] + at, step_left);
          MOE_UNROLL
          for (size_t r = 0; r < R; ++r) acc[r][t] = Ops::madd(acc[r][t], wv[r], xv);
        }
      } else {
        typename Ops::XV xv[T];
        MOE_UNROLL
        for (size_t t = 0; t < T; ++t) xv[t] = Ops::load_x(x[t] + at, step_left);
        MOE_UNROLL
        for (size_t r = 0; r < R; ++r) {
          const typename Weights::WV wv = chunk.load(r, s);
          MOE_UNROLL
          for (size_t t = 0; t < T; ++t) acc[r][t] = Ops::madd(acc[r][t], wv, xv[t]);
        }
      }
    }
  }
  MOE_UNROLL
  for (size_t r = 0; r < R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) {
      if (r < rows) out[r * tokens + t] = Ops::sum(acc[r][t]);
    }
}

// Two panels (8 rows) against T <= Ops::kPairTokens tokens. With one or two tokens a single
// panel gives only 4 or 8 accumulators, each a chain of multiply-adds waiting on the one before
// (4 cycles of latency): two panels double the independent chains, so the FMA units, not the
// latency, set the pace. Each (row, token) accumulator sees the same sequence as in tile(), so
// results are the same bits.
template <typename Ops, typename Weights, size_t T>
void tile_pair(const uint8_t* panel, size_t panel_bytes, size_t padded, const typename Ops::X* const* x, size_t n,
               float* out, size_t tokens, size_t rows) {
  constexpr size_t R = kPanelRows;
  const uint8_t* second = panel + panel_bytes;
  typename Ops::V acc[2 * R][T];
  MOE_UNROLL
  for (size_t r = 0; r < 2 * R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) acc[r][t] = Ops::zero();
  for (size_t k = 0, c = 0; k < n; k += kPanelDepth, ++c) {
    Weights::prefetch(panel, padded, c);
    Weights::prefetch(second, padded, c);
    const typename Weights::Chunk chunk0(panel, padded, c), chunk1(second, padded, c);
    const size_t left = n - k;
    MOE_UNROLL
    for (size_t s = 0; s < kPanelDepth / Ops::kStep; ++s) {
      if (s * Ops::kStep >= left) break;
      const size_t at = k + s * Ops::kStep, step_left = left - s * Ops::kStep;
      typename Ops::XV xv[T];
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) xv[t] = Ops::load_x(x[t] + at, step_left);
      MOE_UNROLL
      for (size_t r = 0; r < 2 * R; ++r) {
        const typename Weights::WV wv = r < R ? chunk0.load(r, s) : chunk1.load(r - R, s);
        MOE_UNROLL
        for (size_t t = 0; t < T; ++t) acc[r][t] = Ops::madd(acc[r][t], wv, xv[t]);
      }
    }
  }
  MOE_UNROLL
  for (size_t r = 0; r < 2 * R; ++r)
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) {
      if (r < rows) out[r * tokens + t] = Ops::sum(acc[r][t]);
    }
}

// tile<T> for a runtime token count 1 <= tn <= T.
template <typename Ops, typename Weights, size_t T>
inline void run_tile(size_t tn, const uint8_t* panel, size_t padded, const typename Ops::X* const* x, size_t n,
                     float* out, size_t tokens, size_t rows) {
  if constexpr (T > 1) {
    if (tn < T) return run_tile<Ops, Weights, T - 1>(tn, panel, padded, x, n, out, tokens, rows);
  }
  tile<Ops, Weights, T>(panel, padded, x, n, out, tokens, rows);
}

// With several token tiles per panel (prefill), the first tile would stall on memory for the
// whole panel: instead each tile brings in its share of the next panel, towards L2.
inline void prefetch_share(const uint8_t* next_panel, size_t bytes, size_t share, size_t shares) {
  const size_t lines = bytes / 64;
  for (size_t l = lines * share / shares; l < lines * (share + 1) / shares; ++l) {
    __builtin_prefetch(next_panel + l * 64, 0, 2);
  }
}

// Token tiles of one panel, as even as possible (32 tokens in tiles of 6: 6+6+5+5+5+5, not
// 6+6+6+6+6+2, as a narrow last tile runs its weight loads for few multiply-adds).
template <typename Ops, typename Weights>
inline void panel_times_tokens(const uint8_t* panel, const uint8_t* next_panel, size_t next_bytes, size_t padded,
                               const typename Ops::X* const* x, size_t tokens, size_t n, float* out, size_t rows) {
  const size_t tiles = (tokens + Ops::kTokens - 1) / Ops::kTokens;
  for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
    const size_t tn = tokens / tiles + (tile < tokens % tiles ? 1 : 0);
    if (tiles > 1) prefetch_share(next_panel, next_bytes, tile, tiles);
    run_tile<Ops, Weights, Ops::kTokens>(tn, panel, padded, x + t0, n, out + t0, tokens, rows);
    t0 += tn;
  }
}

// A GemmFn (ukernel/ukernel.h) of Ops x Weights reading the panels directly.
template <typename Ops, typename Weights>
void gemm(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
          size_t tokens, size_t n, float* out, void*) {
  const auto* const* x = reinterpret_cast<const typename Ops::X* const*>(x_rows);
  size_t r0 = 0;
  if (tokens <= Ops::kPairTokens) {
    for (; r0 + kPanelRows < rows; r0 += 2 * kPanelRows) {
      const uint8_t* panel = panels + (r0 / kPanelRows) * panel_bytes;
      const size_t rn = rows - r0 < 2 * kPanelRows ? rows - r0 : 2 * kPanelRows;
      if (tokens == 1) {
        tile_pair<Ops, Weights, 1>(panel, panel_bytes, padded, x, n, out + r0 * tokens, tokens, rn);
      } else {
        tile_pair<Ops, Weights, Ops::kPairTokens>(panel, panel_bytes, padded, x, n, out + r0 * tokens, tokens, rn);
      }
    }
  }
  for (; r0 < rows; r0 += kPanelRows) {
    const uint8_t* panel = panels + (r0 / kPanelRows) * panel_bytes;
    const size_t rn = rows - r0 < kPanelRows ? rows - r0 : kPanelRows;
    panel_times_tokens<Ops, Weights>(panel, panel + panel_bytes, panel_bytes, padded, x, tokens, n, out + r0 * tokens, rn);
  }
}

// A GemmFn for prefill: each panel is decoded once (Decode::panel, into `scratch` as a dense
// panel that Dense reads) and reused by all the tokens' tiles.
template <typename Ops, typename Dense, typename Decode>
void gemm_decoded(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
                  size_t tokens, size_t n, float* out, void* scratch) {
  const auto* const* x = reinterpret_cast<const typename Ops::X* const*>(x_rows);
  auto* dense = static_cast<uint8_t*>(scratch);
  for (size_t r0 = 0; r0 < rows; r0 += kPanelRows) {
    const uint8_t* panel = panels + (r0 / kPanelRows) * panel_bytes;
    const size_t rn = rows - r0 < kPanelRows ? rows - r0 : kPanelRows;
    Decode::panel(panel, padded, dense);
    panel_times_tokens<Ops, Dense>(dense, panel + panel_bytes, panel_bytes, padded, x, tokens, n, out + r0 * tokens, rn);
  }
}

}  // namespace
}  // namespace ukernel
}  // namespace moe
