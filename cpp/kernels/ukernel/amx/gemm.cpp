// AMX micro-kernels: prefill on Intel's tile unit (tdpbf16ps: a 16 x 32 bf16 tile times a
// 32 x 16 one into 16 x 16 f32, about ten times the vdpbf16ps rate of a core). Compiled with
// the AVX-512 flags plus -mamx-tile -mamx-bf16; the registry runs them only where the CPU has
// the tiles and the OS let this process use them (cpu.cpp). ODR rule: ukernel/ukernel.h.
//
// The panels stay the p4x32 panels every other kernel reads (format/panel.h), so a layer,
// its files and its decode path are the same with or without AMX. Per call:
//   - the token rows are laid out once as B tiles (each 32-element chunk of 16 tokens: 16
//     rows of 16 bf16 pairs, token n's pair p in row p, dword n), zero past n and past the
//     last token;
//   - per block of 32 weight rows, the 8 panels are decoded (bf16: copied; f16, mxfp4, int8:
//     decoded and rounded to bf16, as the AVX-512 prefill kernels do) into two A tiles'
//     worth of rows, [32][padded] bf16 in scratch, which then serve every token of the call;
//   - each 32 x 32 output block is 4 accumulator tiles over the depth, stored once.
// A (row, token) sum is the same sequence of tile products whatever the tile shapes are, so
// results depend neither on batching nor on threads. The tile unit treats subnormal bf16
// inputs as zero and flushes subnormal results, the only difference from vdpbf16ps.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "ukernel/avx512/weights.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

constexpr size_t kTile = 16;                 // rows of an A tile, tokens of a B tile
constexpr size_t kBlockRows = 2 * kTile;     // weight rows per block: two A tiles
constexpr size_t kBlockTokens = 2 * kTile;   // tokens per block: two B tiles
constexpr size_t kTileBytes = 1024;          // 16 rows of 64 bytes
// Staged weight rows are `padded` + 32 bf16 apart, so 16 rows never share an L1 set when the
// depth is a power of two.
constexpr size_t kRowSkew = 32;

// Tile registers: C(i, j) = tmm(2i + j) for row tile i and token tile j, A(i) = tmm(4 + i),
// B(j) = tmm(6 + j); all 16 rows of 64 bytes. The configuration is per thread: each call loads
// it and releases the tiles when done, so a pool thread holds no tile state between calls.
struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

void configure_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; ++i) {
    cfg.rows[i] = kTile;
    cfg.colsb[i] = 64;
  }
  _tile_loadconfig(&cfg);
}

// 16 x 16 dwords in registers, transposed (r[k] becomes column k).
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0x88);
      t[8 * i + j + 4] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + j + 4], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

// Token rows (bf16) -> B tiles: tile j, chunk c at xs + (j * chunks + c) * kTileBytes. Depth
// at or past n and tokens past `tokens` are zero, so no NaN of the caller's padding reaches a
// sum (the weights there are zero too).
void lay_out_tokens(const uint16_t* const* x, size_t tokens, size_t n, size_t padded, uint8_t* xs) {
  const size_t chunks = padded / kPanelDepth;
  for (size_t j = 0; j * kTile < tokens; ++j) {
    const size_t tn = tokens - j * kTile < kTile ? tokens - j * kTile : kTile;
    for (size_t c = 0; c < chunks; ++c) {
      const size_t k0 = c * kPanelDepth, left = n > k0 ? n - k0 : 0;
      const __mmask32 mask = left >= 32 ? 0xffffffffu : static_cast<__mmask32>((1u << left) - 1);
      __m512i r[16];
      for (size_t t = 0; t < kTile; ++t) {
        r[t] = t < tn ? _mm512_maskz_loadu_epi16(mask, x[j * kTile + t] + k0) : _mm512_setzero_si512();
      }
      transpose16(r);
      uint8_t* dst = xs + (j * chunks + c) * kTileBytes;
      for (size_t p = 0; p < kTile; ++p) _mm512_store_si512(dst + p * 64, r[p]);
    }
  }
}

// One panel's 4 rows -> staged rows r .. r + 3 (`stride` bf16 apart), per format.
struct StageBf16 {
  static void panel(const uint8_t* panel, size_t padded, uint16_t* rows, size_t stride) {
    constexpr size_t kChunkBytes = kPanelRows * kPanelDepth * 2;
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      Bf16Weights::prefetch(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        const __m512i v = _mm512_loadu_si512(panel + c * kChunkBytes + r * 64);
        _mm512_store_si512(rows + r * stride + c * kPanelDepth, v);
      }
    }
  }
};
template <typename Weights>
struct StageDecoded {
  static void panel(const uint8_t* panel, size_t padded, uint16_t* rows, size_t stride) {
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      Weights::prefetch(panel, padded, c);
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        const __m512bh v = _mm512_cvtne2ps_pbh(chunk.load(r, 1), chunk.load(r, 0));
        _mm512_store_si512(rows + r * stride + c * kPanelDepth, (__m512i)v);
      }
    }
  }
};

// Accumulator tile C(i, j) -> out rows r0 + 16 i .., tokens t0 + 16 j ..: straight into `out`
// when the tile is whole, else through a buffer. (The tile intrinsics are macros that spell
// their register number out, hence one function per register.)
void copy_part(const float* buffer, float* out, size_t tokens, size_t rn, size_t tn) {
  for (size_t r = 0; r < rn; ++r) std::memcpy(out + r * tokens, buffer + r * kTile, tn * sizeof(float));
}
#define MOE_STORE_TILE(name, reg)                                                  \
  void name(float* out, size_t tokens, size_t rn, size_t tn) {                     \
    if (rn == kTile && tn == kTile) {                                              \
      _tile_stored(reg, out, tokens * sizeof(float));                              \
      return;                                                                      \
    }                                                                              \
    alignas(64) float buffer[kTile * kTile];                                       \
    _tile_stored(reg, buffer, kTile * sizeof(float));                              \
    copy_part(buffer, out, tokens, rn, tn);                                        \
  }
MOE_STORE_TILE(store_tile0, 0)
MOE_STORE_TILE(store_tile1, 1)
MOE_STORE_TILE(store_tile2, 2)
MOE_STORE_TILE(store_tile3, 3)
#undef MOE_STORE_TILE

// The next block's panels, fetched into L2 while this block's tiles are multiplied, a slice per
// depth chunk: the weight stream from DRAM then runs under the tile products instead of
// stalling the next staging copy (which finds its lines in L2). An asm statement, as in
// avx512/weights.h: the compiler may not drop it.
struct NextPanels {
  const uint8_t* base = nullptr;
  size_t count = 0, panel_bytes = 0, per_chunk = 0;
};
inline void prefetch_l2(const uint8_t* p) { __asm__ volatile("prefetcht1 %0" : : "m"(*p)); }
inline void prefetch_next(const NextPanels& next, size_t c) {
  const size_t from = c * next.per_chunk;
  for (size_t p = 0; p < next.count; ++p) {
    const uint8_t* panel = next.base + p * next.panel_bytes;
    for (size_t off = from; off < from + next.per_chunk && off < next.panel_bytes; off += 64) prefetch_l2(panel + off);
  }
}

// A 32-row x 32-token block (RT row tiles, TT token tiles) over the whole depth.
template <int RT, int TT>
void block(const uint16_t* w, size_t stride, const uint8_t* xs0, const uint8_t* xs1, size_t chunks, float* out,
           size_t tokens, size_t rows_left, size_t tokens_left, const NextPanels& next) {
  _tile_zero(0);
  if (TT > 1) _tile_zero(1);
  if (RT > 1) _tile_zero(2);
  if (RT > 1 && TT > 1) _tile_zero(3);
  const size_t stride_bytes = stride * 2;
  for (size_t c = 0; c < chunks; ++c) {
    prefetch_next(next, c);
    _tile_loadd(4, w + c * kPanelDepth, stride_bytes);
    if (RT > 1) _tile_loadd(5, w + kTile * stride + c * kPanelDepth, stride_bytes);
    _tile_loadd(6, xs0 + c * kTileBytes, 64);
    if (TT > 1) _tile_loadd(7, xs1 + c * kTileBytes, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (TT > 1) _tile_dpbf16ps(1, 4, 7);
    if (RT > 1) _tile_dpbf16ps(2, 5, 6);
    if (RT > 1 && TT > 1) _tile_dpbf16ps(3, 5, 7);
  }
  const size_t r0 = rows_left < kTile ? rows_left : kTile, t0 = tokens_left < kTile ? tokens_left : kTile;
  store_tile0(out, tokens, r0, t0);
  if (TT > 1) store_tile1(out + kTile, tokens, r0, tokens_left - kTile < kTile ? tokens_left - kTile : kTile);
  if (RT > 1) {
    const size_t r1 = rows_left - kTile < kTile ? rows_left - kTile : kTile;
    store_tile2(out + kTile * tokens, tokens, r1, t0);
    if (TT > 1) {
      store_tile3(out + kTile * tokens + kTile, tokens, r1, tokens_left - kTile < kTile ? tokens_left - kTile : kTile);
    }
  }
}

// Scratch: the staged weight rows ([32][padded + kRowSkew] bf16), then the token tiles.
template <typename Stage>
void gemm_tiles(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
                size_t tokens, size_t n, float* out, void* scratch) {
  const auto* const* x = reinterpret_cast<const uint16_t* const*>(x_rows);
  const size_t chunks = padded / kPanelDepth, stride = padded + kRowSkew;
  uint16_t* w = static_cast<uint16_t*>(scratch);
  uint8_t* xs = reinterpret_cast<uint8_t*>(w + kBlockRows * stride);
  configure_tiles();
  lay_out_tokens(x, tokens, n, padded, xs);
  for (size_t r0 = 0; r0 < rows; r0 += kBlockRows) {
    const size_t rows_left = rows - r0;
    const size_t panels_here = (rows_left < kBlockRows ? rows_left + kPanelRows - 1 : kBlockRows) / kPanelRows;
    for (size_t p = 0; p < panels_here; ++p) {
      Stage::panel(panels + (r0 / kPanelRows + p) * panel_bytes, padded, w + p * kPanelRows * stride, stride);
    }
    // Rows past the last panel: zero, so the tile reads only written memory (never stored).
    for (size_t r = panels_here * kPanelRows; r < kBlockRows; ++r) std::memset(w + r * stride, 0, padded * 2);
    const bool two_rows = rows_left > kTile;
    NextPanels next;
    if (rows_left > kBlockRows) {
      const size_t after = rows_left - kBlockRows;
      next.base = panels + (r0 + kBlockRows) / kPanelRows * panel_bytes;
      next.count = (after < kBlockRows ? after + kPanelRows - 1 : kBlockRows) / kPanelRows;
      next.panel_bytes = panel_bytes;
      next.per_chunk = (panel_bytes / chunks + 63) / 64 * 64;
    }
    for (size_t t0 = 0; t0 < tokens; t0 += kBlockTokens) {
      const size_t tokens_left = tokens - t0;
      const uint8_t* xs0 = xs + (t0 / kTile) * chunks * kTileBytes;
      const uint8_t* xs1 = xs0 + chunks * kTileBytes;
      float* o = out + r0 * tokens + t0;
      const bool two_tokens = tokens_left > kTile;
      if (two_rows && two_tokens) block<2, 2>(w, stride, xs0, xs1, chunks, o, tokens, rows_left, tokens_left, next);
      else if (two_rows) block<2, 1>(w, stride, xs0, xs1, chunks, o, tokens, rows_left, tokens_left, next);
      else if (two_tokens) block<1, 2>(w, stride, xs0, xs1, chunks, o, tokens, rows_left, tokens_left, next);
      else block<1, 1>(w, stride, xs0, xs1, chunks, o, tokens, rows_left, tokens_left, next);
      next.count = 0;  // fetched during the first token block
    }
  }
  _tile_release();
}

constexpr auto kB = DType::bf16;
constexpr auto kP = PanelLayout::p4x32;
constexpr auto kPrefill = Regime::prefill;
// Per depth element: 32 staged rows of bf16 with their skew (at most 2 x 64 bytes, since the
// depth is at least 32); per token and depth element: one bf16.
constexpr size_t kStageBytesPerDepth = 2 * kBlockRows * 2;
constexpr size_t kTokenBytesPerDepth = 2;

const UKernel kKernels[] = {
    {"gemm_bf16_bf16__amx_32x32", WeightFormat::bf16, kB, kP, kBlockRows, kBlockTokens, kPrefill, "amx", "",
     kStageBytesPerDepth, gemm_tiles<StageBf16>, true, kTokenBytesPerDepth},
    {"gemm_f16_bf16__amx_32x32", WeightFormat::f16, kB, kP, kBlockRows, kBlockTokens, kPrefill, "amx", "",
     kStageBytesPerDepth, gemm_tiles<StageDecoded<F16Weights>>, true, kTokenBytesPerDepth},
    {"gemm_mxfp4_bf16__amx_32x32", WeightFormat::mxfp4, kB, kP, kBlockRows, kBlockTokens, kPrefill, "amx", "",
     kStageBytesPerDepth, gemm_tiles<StageDecoded<Mxfp4Weights>>, true, kTokenBytesPerDepth},
    {"gemm_int8_bf16__amx_32x32", WeightFormat::int8, kB, kP, kBlockRows, kBlockTokens, kPrefill, "amx", "",
     kStageBytesPerDepth, gemm_tiles<StageDecoded<Int8Weights>>, true, kTokenBytesPerDepth},
};

}  // namespace

UKernelList amx_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
