// SVE weight decoders and the f32 FMA tile, shared by sve/gemm.cpp (+sve) and sve/gemm_bf16.cpp
// (+sve+bf16). Vector-length agnostic: nothing assumes 128, 256 or 512 bits.
//
// SVE vectors are sizeless (no arrays or struct members of them), so the tile is not
// ukernel/gemm_tile.h's: it names its accumulators, a<token>_<row>, and the `Weights` structs
// here hand out one predicated vector at a time, chunk.load(pg, r, j): row r, elements
// [j, j + lanes) of its 32-element chunk under `pg`, inactive lanes zero.
//
// A chunk is walked in two halves of 16 elements (sve_next_step), each in steps of svcntw()
// lanes under an svwhilelt predicate that also stops at n (predicated loads read nothing past
// it). No step straddles the halves, so an mxfp4 step reads one nibble half of contiguous
// code bytes at any vector length; every kernel walks this way, so the lane an element lands
// in, and with it the order of the sums, is the same for all formats (decode kernels compute
// bit for bit what the f32 kernel computes on the decoded weights).
//
// Everything is in an anonymous namespace (ODR rule, ukernel/ukernel.h).
#pragma once

#include <arm_sve.h>

#include <cstring>

#include "ukernel/gemm_tile.h"  // prefetch_share, format/panel.h

namespace moe {
namespace ukernel {
namespace {

constexpr size_t kHalfDepth = kPanelDepth / 2;

// Walking a chunk's first `end` elements: the step at j is predicated up to the end of j's
// half (or `end`), and the next one starts `lanes` on, or at that limit.
inline size_t sve_step_stop(size_t j, size_t end) { return j < kHalfDepth && end > kHalfDepth ? kHalfDepth : end; }
inline size_t sve_next_step(size_t j, size_t lanes, size_t end) {
  const size_t stop = sve_step_stop(j, end);
  return j + lanes < stop ? j + lanes : stop;
}

template <size_t Size>
struct DenseChunk {
  static constexpr size_t kChunkBytes = kPanelRows * kPanelDepth * Size;
};

struct F32Weights : DenseChunk<4> {
  struct Chunk {
    const float* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const float*>(panel + c * kChunkBytes)) {}
    svfloat32_t load(svbool_t pg, size_t r, size_t j) const { return svld1_f32(pg, w + r * kPanelDepth + j); }
  };
};

// bf16: zero-extending halfword loads put each value in the low half of a 32-bit lane.
struct Bf16Weights : DenseChunk<2> {
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    svfloat32_t load(svbool_t pg, size_t r, size_t j) const {
      return svreinterpret_f32_u32(svlsl_n_u32_x(svptrue_b32(), svld1uh_u32(pg, w + r * kPanelDepth + j), 16));
    }
  };
};

// f16: FCVT from the low half of each 32-bit lane (exact).
struct F16Weights : DenseChunk<2> {
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    svfloat32_t load(svbool_t pg, size_t r, size_t j) const {
      return svcvt_f32_f16_z(pg, svreinterpret_f16_u32(svld1uh_u32(pg, w + r * kPanelDepth + j)));
    }
  };
};

// mxfp4: a code nibble (sign, 2 exponent bits, 1 mantissa bit) placed at f32 bits 31 and
// 24-22 is e2m1 x 2^-126 exactly (codes 0 and 1 as subnormals); times 2^126 it is the e2m1
// value, times the block scale the decoded weight: both products exact, -0 kept, as the
// scalar decode (e2m1 x scale) computes it. No table lookup, so any vector length works.
struct Mxfp4Weights {
  static constexpr size_t kChunkBytes = kPanelRows * kMxfp4CodeBytes;
  struct Chunk {
    const uint8_t* codes;
    float scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c) : codes(panel + c * kChunkBytes) {
      const uint8_t* s = panel + mxfp4_scales_offset(padded) + c * kPanelRows;
      for (size_t r = 0; r < kPanelRows; ++r) scale[r] = e8m0_value(s[r]);
    }
    svfloat32_t load(svbool_t pg, size_t r, size_t j) const {
      const svbool_t all = svptrue_b32();
      svuint32_t nibble = svld1ub_u32(pg, codes + r * kMxfp4CodeBytes + j % kHalfDepth);
      nibble = j < kHalfDepth ? svand_n_u32_x(all, nibble, 0xf) : svlsr_n_u32_x(all, nibble, 4);
      const svuint32_t bits = svorr_u32_x(all, svlsl_n_u32_x(all, svand_n_u32_x(all, nibble, 8), 28),
                                          svlsl_n_u32_x(all, svand_n_u32_x(all, nibble, 7), 22));
      const svfloat32_t e2m1 = svmul_n_f32_x(all, svreinterpret_f32_u32(bits), 0x1p126f);
      return svmul_n_f32_z(pg, e2m1, scale[r]);
    }
  };
};

// int8: codes sign-extended to 32-bit lanes, converted, times the block's f16 scale (exact).
// Inactive lanes are zeroed after the product too, so an infinite or NaN scale cannot leak
// into them.
struct Int8Weights {
  static constexpr size_t kChunkBytes = kPanelRows * kInt8CodeBytes;
  struct Chunk {
    const int8_t* codes;
    float scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c)
        : codes(reinterpret_cast<const int8_t*>(panel + c * kChunkBytes)) {
      const uint8_t* d = panel + int8_scales_offset(padded) + c * kPanelRows * kInt8ScaleBytes;
      const svbool_t pg = svwhilelt_b32_u64(0, kPanelRows);
      svst1_f32(pg, scale, svcvt_f32_f16_z(pg, svreinterpret_f16_u32(svld1uh_u32(pg, reinterpret_cast<const uint16_t*>(d)))));
    }
    svfloat32_t load(svbool_t pg, size_t r, size_t j) const {
      const svfloat32_t q = svcvt_f32_s32_x(svptrue_b32(), svld1sb_s32(pg, codes + r * kInt8CodeBytes + j));
      return svmul_n_f32_z(pg, q, scale[r]);
    }
  };
};

// a_r += w_r * x for the 4 rows of a panel. Lanes the predicate left out are zero in both w
// and x, so the FMAs run on all lanes.
inline void mla_rows(svfloat32_t x, svfloat32_t w0, svfloat32_t w1, svfloat32_t w2, svfloat32_t w3, svfloat32_t& a0,
                     svfloat32_t& a1, svfloat32_t& a2, svfloat32_t& a3) {
  const svbool_t all = svptrue_b32();
  a0 = svmla_f32_x(all, a0, w0, x);
  a1 = svmla_f32_x(all, a1, w1, x);
  a2 = svmla_f32_x(all, a2, w2, x);
  a3 = svmla_f32_x(all, a3, w3, x);
}

// out[r * tokens] = sum of a_r's lanes (FADDV, a fixed order) for the first `rows` rows. One
// store each: GCC makes a store loop a memcpy call, across which it spills the accumulators.
inline void store_rows(float* out, size_t tokens, size_t rows, svfloat32_t a0, svfloat32_t a1, svfloat32_t a2,
                       svfloat32_t a3) {
  const svbool_t all = svptrue_b32();
  out[0] = svaddv_f32(all, a0);
  if (rows > 1) out[tokens] = svaddv_f32(all, a1);
  if (rows > 2) out[2 * tokens] = svaddv_f32(all, a2);
  if (rows > 3) out[3 * tokens] = svaddv_f32(all, a3);
}

// Widest token tile: 16 accumulators, 4 weight vectors and the token vector of the 32 z
// registers.
constexpr size_t kSveTileTokens = 4;

// 4 rows (one panel) x T <= 4 tokens of f32 FMAs, weights decoded by Weights in registers.
template <typename Weights, size_t T>
void fma_tile(const uint8_t* panel, size_t padded, const float* const* x, size_t n, float* out, size_t tokens,
              size_t rows) {
  const svfloat32_t zero = svdup_n_f32(0.0f);
  svfloat32_t a0_0 = zero, a0_1 = zero, a0_2 = zero, a0_3 = zero;
  [[maybe_unused]] svfloat32_t a1_0 = zero, a1_1 = zero, a1_2 = zero, a1_3 = zero;
  [[maybe_unused]] svfloat32_t a2_0 = zero, a2_1 = zero, a2_2 = zero, a2_3 = zero;
  [[maybe_unused]] svfloat32_t a3_0 = zero, a3_1 = zero, a3_2 = zero, a3_3 = zero;
  const size_t lanes = svcntw();
  for (size_t k = 0, c = 0; k < n; k += kPanelDepth, ++c) {
    const typename Weights::Chunk chunk(panel, padded, c);
    const size_t end = n - k < kPanelDepth ? n - k : kPanelDepth;
    for (size_t j = 0; j < end; j = sve_next_step(j, lanes, end)) {
      const svbool_t pg = svwhilelt_b32_u64(j, sve_step_stop(j, end));
      const svfloat32_t w0 = chunk.load(pg, 0, j), w1 = chunk.load(pg, 1, j), w2 = chunk.load(pg, 2, j),
                        w3 = chunk.load(pg, 3, j);
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

// An SVE tile: template <size_t T> static void run(panel, padded, x, n, out, tokens, rows).
template <typename Weights>
struct FmaTile {
  using X = float;
  template <size_t T>
  static void run(const uint8_t* panel, size_t padded, const float* const* x, size_t n, float* out, size_t tokens,
                  size_t rows) {
    fma_tile<Weights, T>(panel, padded, x, n, out, tokens, rows);
  }
};

// Tile::run<tn> for a runtime token count 1 <= tn <= T.
template <typename Tile, size_t T>
inline void sve_run_tile(size_t tn, const uint8_t* panel, size_t padded, const typename Tile::X* const* x, size_t n,
                         float* out, size_t tokens, size_t rows) {
  if constexpr (T > 1) {
    if (tn < T) return sve_run_tile<Tile, T - 1>(tn, panel, padded, x, n, out, tokens, rows);
  }
  Tile::template run<T>(panel, padded, x, n, out, tokens, rows);
}

// Token tiles of one panel, as even as possible, each prefetching its share of the next panel
// (gemm_tile.h's panel_times_tokens).
template <typename Tile>
inline void sve_panel_times_tokens(const uint8_t* panel, const uint8_t* next_panel, size_t next_bytes, size_t padded,
                                   const typename Tile::X* const* x, size_t tokens, size_t n, float* out, size_t rows) {
  const size_t tiles = (tokens + kSveTileTokens - 1) / kSveTileTokens;
  for (size_t tile = 0, t0 = 0; tile < tiles; ++tile) {
    const size_t tn = tokens / tiles + (tile < tokens % tiles ? 1 : 0);
    if (tiles > 1) prefetch_share(next_panel, next_bytes, tile, tiles);
    sve_run_tile<Tile, kSveTileTokens>(tn, panel, padded, x + t0, n, out + t0, tokens, rows);
    t0 += tn;
  }
}

// A GemmFn (ukernel/ukernel.h) of Tile reading the panels directly.
template <typename Tile>
void sve_gemm(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
              size_t tokens, size_t n, float* out, void*) {
  const auto* const* x = reinterpret_cast<const typename Tile::X* const*>(x_rows);
  for (size_t r0 = 0; r0 < rows; r0 += kPanelRows) {
    const uint8_t* panel = panels + (r0 / kPanelRows) * panel_bytes;
    const size_t rn = rows - r0 < kPanelRows ? rows - r0 : kPanelRows;
    sve_panel_times_tokens<Tile>(panel, panel + panel_bytes, panel_bytes, padded, x, tokens, n, out + r0 * tokens, rn);
  }
}

// A GemmFn for prefill: each panel decoded once into `scratch` (Decode::panel), as the dense
// panel Tile reads, and reused by all the tokens' tiles.
template <typename Tile, typename Decode>
void sve_gemm_decoded(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
                      size_t tokens, size_t n, float* out, void* scratch) {
  const auto* const* x = reinterpret_cast<const typename Tile::X* const*>(x_rows);
  auto* dense = static_cast<uint8_t*>(scratch);
  for (size_t r0 = 0; r0 < rows; r0 += kPanelRows) {
    const uint8_t* panel = panels + (r0 / kPanelRows) * panel_bytes;
    const size_t rn = rows - r0 < kPanelRows ? rows - r0 : kPanelRows;
    Decode::panel(panel, padded, dense);
    sve_panel_times_tokens<Tile>(dense, panel + panel_bytes, panel_bytes, padded, x, tokens, n, out + r0 * tokens, rn);
  }
}

}  // namespace
}  // namespace ukernel
}  // namespace moe
