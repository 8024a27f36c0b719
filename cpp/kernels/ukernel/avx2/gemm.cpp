// AVX2 + FMA micro-kernels (every x86-64 server since 2013). Compiled with -mavx2 -mfma -mf16c;
// a kernel runs only after the registry has checked the CPU and OS support them. ODR rule:
// ukernel/ukernel.h.
#include <immintrin.h>

#include <cstring>

#include "ukernel/gemm_tile.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

// Tile of one panel (4 weight rows) x 3 token rows: 12 accumulators, the 3 token vectors and
// one weight vector: all 16 ymm registers (so the tokens are loaded first).
constexpr size_t kTileTokens = 3;

// Fixed-order horizontal sum of 8 lanes.
inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

struct FmaOps {
  using V = __m256;
  using X = float;
  using XV = __m256;
  static constexpr size_t kStep = 8;
  static constexpr size_t kTokens = kTileTokens;
  static constexpr bool kWeightsFirst = false;
  static constexpr size_t kPairTokens = 1;  // 8 accumulators and the decode temporaries: 16 ymm
  static V zero() { return _mm256_setzero_ps(); }
  // AVX2 masks are per-lane sign bits.
  static XV load_x(const float* p, size_t left) {
    if (left >= kStep) return _mm256_loadu_ps(p);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane));
  }
  static V madd(V acc, V w, XV x) { return _mm256_fmadd_ps(w, x, acc); }
  static float sum(V v) { return hsum(v); }
};

template <size_t Size>
struct DenseChunk {
  static constexpr size_t kChunkBytes = kPanelRows * kPanelDepth * Size;
  static void prefetch(const uint8_t*, size_t, size_t) {}  // the hardware prefetcher keeps up at 8 lanes
};

struct F32Weights : DenseChunk<4> {
  using WV = __m256;
  struct Chunk {
    const float* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const float*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const { return _mm256_loadu_ps(w + r * kPanelDepth + 8 * s); }
  };
};
struct Bf16Weights : DenseChunk<2> {
  using WV = __m256;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * kPanelDepth + 8 * s));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  };
};
struct F16Weights : DenseChunk<2> {
  using WV = __m256;
  struct Chunk {
    const uint16_t* w;
    Chunk(const uint8_t* panel, size_t, size_t c) : w(reinterpret_cast<const uint16_t*>(panel + c * kChunkBytes)) {}
    WV load(size_t r, size_t s) const {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * kPanelDepth + 8 * s)));
    }
  };
};

// mxfp4: step s takes 8 code bytes (s % 2) and one nibble (s / 2); vpermps looks up the
// magnitude (low 3 bits) and bit 3 becomes the sign.
struct Mxfp4Weights {
  using WV = __m256;
  static constexpr size_t kChunkBytes = kPanelRows * kMxfp4CodeBytes;
  static void prefetch(const uint8_t*, size_t, size_t) {}
  struct Chunk {
    const uint8_t* codes;
    float scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c) : codes(panel + c * kChunkBytes) {
      const uint8_t* s = panel + mxfp4_scales_offset(padded) + c * kPanelRows;
      for (size_t r = 0; r < kPanelRows; ++r) scale[r] = e8m0_value(s[r]);
    }
    WV load(size_t r, size_t s) const {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + r * kMxfp4CodeBytes + 8 * (s % 2)));
      __m256i idx = _mm256_cvtepu8_epi32(bytes);
      if (s >= 2) idx = _mm256_srli_epi32(idx, 4);
      const __m256 magnitude = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kE2m1), idx);
      const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(idx, _mm256_set1_epi32(8)), 28);
      return _mm256_mul_ps(_mm256_xor_ps(magnitude, _mm256_castsi256_ps(sign)), _mm256_set1_ps(scale[r]));
    }
  };
};

struct Int8Weights {
  using WV = __m256;
  static constexpr size_t kChunkBytes = kPanelRows * kInt8CodeBytes;
  static void prefetch(const uint8_t*, size_t, size_t) {}
  struct Chunk {
    const uint8_t* codes;
    float scale[kPanelRows];
    Chunk(const uint8_t* panel, size_t padded, size_t c) : codes(panel + c * kChunkBytes) {
      const __m128 d = _mm_cvtph_ps(_mm_loadl_epi64(
          reinterpret_cast<const __m128i*>(panel + int8_scales_offset(padded) + c * kPanelRows * kInt8ScaleBytes)));
      _mm_storeu_ps(scale, d);
    }
    WV load(size_t r, size_t s) const {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + r * kInt8CodeBytes + 8 * s));
      return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(scale[r]));
    }
  };
};

// Decodes a whole panel into a dense f32 panel for prefill.
template <typename Weights>
struct DecodeToF32 {
  static void panel(const uint8_t* panel, size_t padded, uint8_t* dense) {
    float* out = reinterpret_cast<float*>(dense);
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const typename Weights::Chunk chunk(panel, padded, c);
      for (size_t r = 0; r < kPanelRows; ++r) {
        float* row = out + (c * kPanelRows + r) * kPanelDepth;
        for (size_t s = 0; s < kPanelDepth / 8; ++s) _mm256_store_ps(row + 8 * s, chunk.load(r, s));
      }
    }
  }
};

constexpr auto kF = DType::f32;
constexpr auto kP = PanelLayout::p4x32;

const UKernel kKernels[] = {
    {"gemm_f32_f32__avx2_4x3", WeightFormat::f32, kF, kP, 4, 3, Regime::any, "avx2", "", 0, gemm<FmaOps, F32Weights>},
    {"gemm_bf16_f32__avx2_4x3", WeightFormat::bf16, kF, kP, 4, 3, Regime::any, "avx2", "", 0, gemm<FmaOps, Bf16Weights>},
    {"gemm_f16_f32__avx2_4x3", WeightFormat::f16, kF, kP, 4, 3, Regime::any, "avx2", "f16c", 0, gemm<FmaOps, F16Weights>},
    {"gemm_mxfp4_f32__avx2_4x3_panel", WeightFormat::mxfp4, kF, kP, 4, 3, Regime::prefill, "avx2", "", 16,
     gemm_decoded<FmaOps, F32Weights, DecodeToF32<Mxfp4Weights>>},
    {"gemm_mxfp4_f32__avx2_4x3", WeightFormat::mxfp4, kF, kP, 4, 3, Regime::decode, "avx2", "", 0, gemm<FmaOps, Mxfp4Weights>},
    {"gemm_int8_f32__avx2_4x3_panel", WeightFormat::int8, kF, kP, 4, 3, Regime::prefill, "avx2", "f16c", 16,
     gemm_decoded<FmaOps, F32Weights, DecodeToF32<Int8Weights>>},
    {"gemm_int8_f32__avx2_4x3", WeightFormat::int8, kF, kP, 4, 3, Regime::decode, "avx2", "f16c", 0, gemm<FmaOps, Int8Weights>},
};

}  // namespace

UKernelList avx2_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
