// AVX-512 micro-kernels (F, BW, VL, DQ; BF16 where present). Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16; a kernel runs only after the
// registry has checked the CPU and OS support its features. ODR rule: ukernel/ukernel.h.
// GCC 12 reports false -W(maybe-)uninitialized warnings inside its own AVX-512 intrinsics
// (the `__Y = __Y` idiom of avx512fintrin.h) at some optimisation settings.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "ukernel/avx512/weights.h"
#include "ukernel/gemm_tile.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

// Tile of one panel (4 weight rows) x 6 token rows: 24 accumulators of the 32 zmm registers,
// leaving room for the 4 weight vectors and the token vector in flight. Each weight load
// feeds 6 FMAs and each token load 4, so L1 bandwidth keeps up with the FMA units.
constexpr size_t kTileTokens = 6;

// Fixed-order horizontal sum (GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized).
inline float hsum(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}

// f32 FMAs: 16 lanes, two steps per 32-element chunk.
struct FmaOps {
  using V = __m512;
  using X = float;
  using XV = __m512;
  static constexpr size_t kStep = 16;
  static constexpr size_t kTokens = kTileTokens;
  static constexpr bool kWeightsFirst = true;
  static constexpr size_t kPairTokens = 2;  // 16 accumulators, 2 token vectors, 8 e2m1 tables
  static V zero() { return _mm512_setzero_ps(); }
  static XV load_x(const float* p, size_t left) {
    return _mm512_maskz_loadu_ps(left >= kStep ? 0xffff : static_cast<__mmask16>((1u << left) - 1), p);
  }
  static V madd(V acc, V w, XV x) { return _mm512_fmadd_ps(w, x, acc); }
  static float sum(V v) { return hsum(v); }
};

// vdpbf16ps: 32 bf16 products per instruction, pairs (i, i+1) summed into f32 lanes.
struct Bf16DotOps {
  using V = __m512;
  using X = uint16_t;
  using XV = __m512bh;
  static constexpr size_t kStep = 32;
  static constexpr size_t kTokens = kTileTokens;
  static constexpr bool kWeightsFirst = true;
  static constexpr size_t kPairTokens = 2;
  static V zero() { return _mm512_setzero_ps(); }
  static XV load_x(const uint16_t* p, size_t left) {
    return (__m512bh)_mm512_maskz_loadu_epi16(left >= kStep ? 0xffffffffu : static_cast<__mmask32>((1u << left) - 1), p);
  }
  static V madd(V acc, __m512bh w, XV x) { return _mm512_dpbf16_ps(acc, w, x); }
  static float sum(V v) { return hsum(v); }
};

// mxfp4 decode with few tokens, built around the shuffle unit, its limit: the 64 code bytes of
// a chunk (4 rows x 32 elements) are loaded as 16 dwords, and each of their 8 nibbles k gives
// 16 lanes at once (vpsrld + vpermps: 2 instructions for 16 weights, against 3 when each row's
// bytes are widened first). Lane i then holds row i / 4, element e(i % 4, k) = 4 (i % 4) +
// k / 2 + 16 (k % 2) of the chunk (format/panel.h), so each token row is first laid out in that
// order (xs, in scratch: 16 floats per k and chunk), and a lane's accumulator belongs to one row.
// A chunk's 8 products are summed unscaled, then scaled by the rows' block scales (exact powers
// of two) into the running sum; the 4 lanes of a row are added in a fixed order at the end.
// Within f32 rounding of the decoded weights, not bit-identical to the f32 kernel (other order).
constexpr size_t kLaneTokens = 3;  // token rows laid out per pass: 3 x 16 floats per depth

// Lane i of nibble k takes element 4 (i % 4) + k / 2 of the chunk's first half (k even) or of
// its second half (k odd): one vpermps of the 16 loaded values per k.
void lay_out_tokens(const float* const* x, size_t tn, size_t n, size_t padded, float* xs) {
  for (size_t t = 0; t < tn; ++t) {
    float* dst = xs + t * padded * kPanelRows;
    for (size_t c = 0; c < padded / kPanelDepth; ++c) {
      const size_t k0 = c * kPanelDepth;
      const size_t left = n > k0 ? n - k0 : 0;
      const __mmask16 lo = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
      const __mmask16 hi = left >= 32 ? 0xffff : left <= 16 ? 0 : static_cast<__mmask16>((1u << (left - 16)) - 1);
      const __m512 half[2] = {_mm512_maskz_loadu_ps(lo, x[t] + k0), _mm512_maskz_loadu_ps(hi, x[t] + k0 + 16)};
      for (size_t k = 0; k < 8; ++k) {
        const int j = static_cast<int>(k / 2);
        const __m512i idx = _mm512_setr_epi32(j, 4 + j, 8 + j, 12 + j, j, 4 + j, 8 + j, 12 + j, j, 4 + j, 8 + j, 12 + j, j,
                                              4 + j, 8 + j, 12 + j);
        _mm512_storeu_ps(dst + (c * 8 + k) * 16, _mm512_permutexvar_ps(idx, half[k % 2]));
      }
    }
  }
}

// Lanes 4r .. 4r + 3 get 2^(s_r - 127) (s = 0: the subnormal 2^-127; 0xFF: NaN).
inline __m512 e8m0_lanes(const uint8_t* scales) {
  int32_t four;
  std::memcpy(&four, scales, sizeof four);
  const __m128i bytes = _mm_shuffle_epi8(_mm_cvtsi32_si128(four), _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
  const __m512i s = _mm512_cvtepu8_epi32(bytes);
  __m512i bits = _mm512_slli_epi32(s, 23);
  bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(s, _mm512_setzero_si512()), bits, _mm512_set1_epi32(0x00400000));
  bits = _mm512_mask_blend_epi32(_mm512_cmpeq_epi32_mask(s, _mm512_set1_epi32(0xff)), bits, _mm512_set1_epi32(0x7fc00000));
  return _mm512_castsi512_ps(bits);
}

template <size_t T>
void mxfp4_lanes_panel(const uint8_t* panel, size_t padded, const float* xs, float* out, size_t tokens, size_t rows) {
  const __m512 e2m1 = _mm512_loadu_ps(kE2m1);
  const uint8_t* scales = panel + mxfp4_scales_offset(padded);
  __m512 acc[T];
  MOE_UNROLL
  for (size_t t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (size_t c = 0; c < padded / kPanelDepth; ++c) {
    const uint8_t* codes = panel + c * kPanelRows * kMxfp4CodeBytes;
    prefetch_line(codes + kPrefetchBytes);
    if (c % 16 == 0) prefetch_line(scales + c * kPanelRows + kPrefetchBytes / 16);
    const __m512i v = _mm512_loadu_si512(codes);
    __m512 part[T];
    MOE_UNROLL
    for (size_t k = 0; k < 8; ++k) {
      const __m512 w = _mm512_permutexvar_ps(_mm512_srli_epi32(v, static_cast<unsigned>(4 * k)), e2m1);
      MOE_UNROLL
      for (size_t t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(xs + t * padded * kPanelRows + (c * 8 + k) * 16);
        part[t] = k == 0 ? _mm512_mul_ps(w, xv) : _mm512_fmadd_ps(w, xv, part[t]);
      }
    }
    const __m512 scale = e8m0_lanes(scales + c * kPanelRows);
    MOE_UNROLL
    for (size_t t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(part[t], scale, acc[t]);
  }
  MOE_UNROLL
  for (size_t t = 0; t < T; ++t) {
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, acc[t]);
    for (size_t r = 0; r < rows; ++r) {
      out[r * tokens + t] = (lanes[4 * r] + lanes[4 * r + 1]) + (lanes[4 * r + 2] + lanes[4 * r + 3]);
    }
  }
}

void gemm_mxfp4_lanes(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
                      size_t tokens, size_t n, float* out, void* scratch) {
  const auto* const* x = reinterpret_cast<const float* const*>(x_rows);
  float* xs = static_cast<float*>(scratch);
  for (size_t t0 = 0; t0 < tokens; t0 += kLaneTokens) {
    const size_t tn = tokens - t0 < kLaneTokens ? tokens - t0 : kLaneTokens;
    lay_out_tokens(x + t0, tn, n, padded, xs);
    for (size_t r0 = 0; r0 < rows; r0 += kPanelRows) {
      const uint8_t* panel = panels + (r0 / kPanelRows) * panel_bytes;
      const size_t rn = rows - r0 < kPanelRows ? rows - r0 : kPanelRows;
      float* o = out + r0 * tokens + t0;
      if (tn == 1) mxfp4_lanes_panel<1>(panel, padded, xs, o, tokens, rn);
      else if (tn == 2) mxfp4_lanes_panel<2>(panel, padded, xs, o, tokens, rn);
      else mxfp4_lanes_panel<3>(panel, padded, xs, o, tokens, rn);
    }
  }
}

constexpr auto kF = DType::f32;
constexpr auto kB = DType::bf16;
constexpr auto kP = PanelLayout::p4x32;
constexpr auto kDecode = Regime::decode;
constexpr auto kPrefill = Regime::prefill;
constexpr auto kAny = Regime::any;

// Best first for each format: the prefill kernels that decode a panel once (bf16 dot products
// where the CPU has them, else f32), then the kernel reading the panels directly.
const UKernel kKernels[] = {
    {"gemm_f32_f32__avx512_4x6", WeightFormat::f32, kF, kP, 4, 6, kAny, "avx512", "", 0, gemm<FmaOps, F32Weights>},
    {"gemm_bf16_bf16__avx512bf16_4x6", WeightFormat::bf16, kB, kP, 4, 6, kPrefill, "avx512", "avx512bf16", 0,
     gemm<Bf16DotOps, Bf16PairWeights>},
    {"gemm_bf16_f32__avx512_4x6", WeightFormat::bf16, kF, kP, 4, 6, kAny, "avx512", "", 0, gemm<FmaOps, Bf16Weights>},
    {"gemm_f16_bf16__avx512bf16_4x6_panel", WeightFormat::f16, kB, kP, 4, 6, kPrefill, "avx512", "avx512bf16", 8,
     gemm_decoded<Bf16DotOps, Bf16PairWeights, DecodeToBf16<F16Weights>>},
    {"gemm_f16_f32__avx512_4x6", WeightFormat::f16, kF, kP, 4, 6, kAny, "avx512", "", 0, gemm<FmaOps, F16Weights>},
    {"gemm_mxfp4_bf16__avx512bf16_4x6_panel", WeightFormat::mxfp4, kB, kP, 4, 6, kPrefill, "avx512", "avx512bf16", 8,
     gemm_decoded<Bf16DotOps, Bf16PairWeights, DecodeToBf16<Mxfp4Weights>>},
    {"gemm_mxfp4_f32__avx512_4x6_panel", WeightFormat::mxfp4, kF, kP, 4, 6, kPrefill, "avx512", "", 16,
     gemm_decoded<FmaOps, F32Weights, DecodeToF32<Mxfp4Weights>>},
    {"gemm_mxfp4_f32__avx512_4x3_lanes", WeightFormat::mxfp4, kF, kP, 4, 3, kDecode, "avx512", "", kLaneTokens * 16,
     gemm_mxfp4_lanes, false},
    {"gemm_mxfp4_f32__avx512_4x6", WeightFormat::mxfp4, kF, kP, 4, 6, kDecode, "avx512", "", 0, gemm<FmaOps, Mxfp4Weights>},
    {"gemm_int8_bf16__avx512bf16_4x6_panel", WeightFormat::int8, kB, kP, 4, 6, kPrefill, "avx512", "avx512bf16", 8,
     gemm_decoded<Bf16DotOps, Bf16PairWeights, DecodeToBf16<Int8Weights>>},
    {"gemm_int8_f32__avx512_4x6_panel", WeightFormat::int8, kF, kP, 4, 6, kPrefill, "avx512", "", 16,
     gemm_decoded<FmaOps, F32Weights, DecodeToF32<Int8Weights>>},
    {"gemm_int8_f32__avx512_4x6", WeightFormat::int8, kF, kP, 4, 6, kDecode, "avx512", "", 0, gemm<FmaOps, Int8Weights>},
};

}  // namespace

UKernelList avx512_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
