// The AVX-512 weight decoders of the p4x32 panels (format/panel.h): per format, a chunk's
// rows widened to f32 in registers, the software prefetch of the weight stream, and the
// decode of a whole panel for the prefill kernels. Shared by the AVX-512 and the AMX kernel
// files, which compile it with the same AVX-512 flags; like gemm_tile.h everything here is in
// an anonymous namespace, so each file keeps its own copy (the ODR rule of ukernel/ukernel.h).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "format/panel.h"

namespace moe {
namespace ukernel {
namespace {

// Software prefetch this far ahead in a panel's weight stream when decoding (4 KB: ~5% more
// bandwidth than 1-2 KB, measured with bf16).
constexpr size_t kPrefetchBytes = 4096;

// As an asm statement: GCC 12 drops _mm_prefetch calls from some of these loops (the int8
// tiles had none left), and a decode tile depends on them.
inline void prefetch_line(const uint8_t* p) { __asm__ volatile("prefetcht0 %0" : : "m"(*p)); }

// Dense panels of Size-byte values: chunk c, row r at (c * 4 + r) * 32 values.
template <size_t Size>
struct DensePrefetch {
  static constexpr size_t kChunkBytes = kPanelRows * kPanelDepth * Size;
  static void prefetch(const uint8_t* panel, size_t, size_t c) {
    const uint8_t* p = panel + c * kChunkBytes + kPrefetchBytes;
    for (size_t off = 0; off < kChunkBytes; off += 64) prefetch_line(p + off);
  }
};

struct F32Weights : DensePrefetch<4> {
  using WV = __m512;
  struct Chunk {
    const float* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const float*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const { return _mm512_loadu_ps(w + r * kPanelDepth + 16 * s); }
  };
};

// bf16 or f16 widened to f32 in registers.
struct Bf16Weights : DensePrefetch<2> {
  using WV = __m512;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * kPanelDepth + 16 * s));
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  };
};
struct F16Weights : DensePrefetch<2> {
  using WV = __m512;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const {
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * kPanelDepth + 16 * s)));
    }
  };
};
// bf16 pairs as they are, for vdpbf16ps.
struct Bf16PairWeights : DensePrefetch<2> {
  using WV = __m512bh;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t) const { return (__m512bh)_mm512_loadu_si512(w + r * kPanelDepth); }
  };
};

// Row r's lane of a chunk's 4 values, in all 16 lanes.
inline __m512 broadcast_row(__m128 four, size_t r) {
  return _mm512_broadcastss_ps(_mm_permutevar_ps(four, _mm_set1_epi32(static_cast<int>(r))));
}

// mxfp4: a row's 16 code bytes widened to 16 lanes; step 0 takes the low nibbles (elements
// 0-15), step 1 the high ones (16-31), looked up by vpermps (which reads the low 4 bits of
// each index) in the row's e2m1 table already scaled by its block scale: exact f32 weights
// (e2m1 times a power of two), one multiply per row and chunk.
struct Mxfp4Weights {
  using WV = __m512;
  static constexpr size_t kChunkBytes = kPanelRows * kMxfp4CodeBytes;
  static void prefetch(const uint8_t* panel, size_t padded, size_t c) {
    prefetch_line(panel + c * kChunkBytes + kPrefetchBytes);
    if (c % 16 == 0) prefetch_line(panel + mxfp4_scales_offset(padded) + c * kPanelRows + kPrefetchBytes / 16);
  }
  struct Chunk {
    const uint8_t* codes;
    __m512 table[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c) : codes(panel + c * kChunkBytes) {
      const __m512 e2m1 = _mm512_loadu_ps(kE2m1);
      const uint8_t* s = panel + mxfp4_scales_offset(padded) + c * kPanelRows;
      for (size_t r = 0; r < kPanelRows; ++r) table[r] = _mm512_mul_ps(e2m1, _mm512_set1_ps(e8m0_value(s[r])));
    }
    WV load(size_t r, size_t s) const {
      __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + r * kMxfp4CodeBytes)));
      if (s == 1) idx = _mm512_srli_epi32(idx, 4);
      return _mm512_permutexvar_ps(idx, table[r]);
    }
  };
};

// int8: 16 codes widened to f32, times the block's f16 scale (exact in f32).
struct Int8Weights {
  using WV = __m512;
  static constexpr size_t kChunkBytes = kPanelRows * kInt8CodeBytes;
  static void prefetch(const uint8_t* panel, size_t padded, size_t c) {
    prefetch_line(panel + c * kChunkBytes + kPrefetchBytes);
    prefetch_line(panel + c * kChunkBytes + kPrefetchBytes + 64);
    if (c % 8 == 0) prefetch_line(panel + int8_scales_offset(padded) + c * kPanelRows * kInt8ScaleBytes + kPrefetchBytes / 16);
  }
  struct Chunk {
    const uint8_t* codes;
    __m512 scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c) : codes(panel + c * kChunkBytes) {
      const __m128 d = _mm_cvtph_ps(_mm_loadl_epi64(
          reinterpret_cast<const __m128i*>(panel + int8_scales_offset(padded) + c * kPanelRows * kInt8ScaleBytes)));
      for (size_t r = 0; r < kPanelRows; ++r) scale[r] = broadcast_row(d, r);
    }
    WV load(size_t r, size_t s) const {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + r * kInt8CodeBytes + 16 * s));
      return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), scale[r]);
    }
  };
};

// Decodes a whole panel into a dense f32 or bf16 panel (format/panel.h) for prefill.
template <typename Weights>
struct DecodeToF32 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    float* out = reinterpret_cast<float*>(dense);
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        float* row = out + (c * kPanelRows + r) * kPanelDepth;
        _mm512_store_ps(row, chunk.load(r, 0));
        _mm512_store_ps(row + 16, chunk.load(r, 1));
      }
    }
  }
};
template <typename Weights>
struct DecodeToBf16 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        const __m512bh v = _mm512_cvtne2ps_pbh(chunk.load(r, 1), chunk.load(r, 0));
        _mm512_store_si512(dense + (c * kPanelRows + r) * kPanelDepth * 2, (__m512i)v);
      }
    }
  }
};

}  // namespace
}  // namespace ukernel
}  // namespace moe
