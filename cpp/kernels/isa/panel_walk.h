// The walk over panels x token tiles shared by the SIMD kernel files (avx2, avx512, neon*,
// sve*).
//
// A tile is a struct with `kTokens` (its widest token count) and
//   template <size_t T> static void run(panel, x, n, out, tokens, rows)
// computing all kPanelRows rows of one panel against T token rows and storing the first `rows`
// of them at out[r * tokens + t]. A DotFn's panels are whole in memory (panel.h), so a tile may
// read the rows it does not store: no per-row-count variants are needed.
//
// Included by ISA files only, and everything here is in an anonymous namespace: each file
// compiles its own copy with its own flags (the ODR rule of kernel_table.h).
#pragma once

#include <cstddef>

#include "kernel_table.h"

namespace moe {
namespace isa {
namespace {

// Tile::run<tn> for a runtime token count 1 <= tn <= T.
template <typename Tile, size_t T, typename W, typename X>
inline void run_tile(size_t tn, const W* panel, const X* const* x, size_t n, float* out,
                     size_t tokens, size_t rows) {
  if constexpr (T > 1) {
    if (tn < T) return run_tile<Tile, T - 1>(tn, panel, x, n, out, tokens, rows);
  }
  Tile::template run<T>(panel, x, n, out, tokens, rows);
}

// With several token tiles per panel (prefill), the first tile would stall on memory for the
// whole panel: instead each tile brings in its share of the next panel, towards L2.
inline void prefetch_share(const void* next_panel, size_t bytes, size_t share, size_t shares) {
  const size_t lines = bytes / 64;
  const char* p = static_cast<const char*>(next_panel);
  for (size_t l = lines * share / shares; l < lines * (share + 1) / shares; ++l) {
    __builtin_prefetch(p + l * 64, 0, 2);
  }
}

// A DotFn (kernel_table.h) made of Tile: panels one after another, tokens in tiles of at most
// Tile::kTokens, as even as possible (32 tokens in tiles of 6: 6+6+5+5+5+5, not 6+6+6+6+6+2,
// as a narrow last tile runs its weight loads for few multiply-adds).
template <typename Tile, typename W, typename X>
void walk_panels(const W* panels, size_t padded_depth, size_t rows, const X* const* x,
                 size_t tokens, size_t n, float* out) {
  const size_t panel_elements = kPanelRows * padded_depth;
  const size_t tiles = (tokens + Tile::kTokens - 1) / Tile::kTokens;
  for (size_t r0 = 0; r0 < rows; r0 += kPanelRows) {
    const W* panel = panels + (r0 / kPanelRows) * panel_elements;
    const size_t rn = rows - r0 < kPanelRows ? rows - r0 : kPanelRows;
    for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
      const size_t tn = tokens / tiles + (tile < tokens % tiles ? 1 : 0);
      if (tiles > 1) prefetch_share(panel + panel_elements, panel_elements * sizeof(W), tile, tiles);
      run_tile<Tile, Tile::kTokens>(tn, panel, x + t0, n, out + r0 * tokens + t0, tokens, rn);
      t0 += tn;
    }
  }
}

}  // namespace
}  // namespace isa
}  // namespace moe
