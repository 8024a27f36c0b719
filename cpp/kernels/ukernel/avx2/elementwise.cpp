// AVX2 + FMA elementwise kernels: vector math and gated activations (elementwise_math.h over
// the Avx2 struct below) and the W13 even/odd split. Compiled with -mavx2 -mfma -mf16c; only
// called after cpu.cpp has checked the CPU and OS support them. ODR rule: ukernel/ukernel.h.
#include <immintrin.h>

#include <cstring>

#include "ukernel/elementwise_math.h"

namespace moe {
namespace isa {
namespace {

// The pack, unpack and shuffle instructions work per 128-bit half: [a0 b0 | a1 b1] in 64-bit
// quarters. The permute (0, 2, 1, 3) puts them in order: [a0 a1 | b0 b1].
inline __m256i in_order(__m256i halves) { return _mm256_permute4x64_epi64(halves, 0xd8); }

// Lanes below `left` set: AVX2 masks are per-lane sign bits.
inline __m256i lanes_below(size_t left) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

struct Avx2 {
  using V = __m256;
  using M = __m256;
  static constexpr size_t kLanes = 8;

  static V set(float v) { return _mm256_set1_ps(v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  // vminps/vmaxps return the second operand when either is NaN.
  static V min_nan(V limit, V x) { return _mm256_min_ps(limit, x); }
  static V max_nan(V limit, V x) { return _mm256_max_ps(limit, x); }
  static V abs(V x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  static V neg_abs(V x) { return _mm256_or_ps(_mm256_set1_ps(-0.0f), x); }
  static V copysign(V mag, V sgn) {
    const V sign = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(sign, sgn));
  }
  static V round(V x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // 2^n as two normal factors 2^(n>>1) and 2^(n - (n>>1)), each in [-75, 64]: y * 2^(n>>1) is
  // exact, so a subnormal or infinite result is rounded once.
  static V scale(V y, V n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const V f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const V f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, f1), f2);
  }
  static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static V select(M m, V if_true, V if_false) { return _mm256_blendv_ps(if_false, if_true, m); }

  static V load_f32(const float* p) { return _mm256_loadu_ps(p); }
  static V load_f32(const float* p, size_t left) {
    return _mm256_maskload_ps(p, lanes_below(left));
  }
  static void store_f32(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_f32(float* p, V v, size_t left) {
    _mm256_maskstore_ps(p, lanes_below(left), v);
  }

  static V widen(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  // f32_to_bf16 of bf16.cpp on 8 lanes: round to nearest even; NaN keeps its top bits, quieted.
  static __m128i narrow(V v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16);
    const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)),
                                              _mm256_set1_epi32(0x7f800000));
    // Values fit 16 bits, so the saturating pack is exact; it packs per 128-bit half.
    const __m256i r = _mm256_blendv_epi8(rounded, nan, is_nan);
    const __m256i packed = _mm256_packus_epi32(r, r);
    return _mm_unpacklo_epi64(_mm256_castsi256_si128(packed), _mm256_extracti128_si256(packed, 1));
  }
  static V load_bf16(const uint16_t* p) {
    return widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load_bf16(const uint16_t* p, size_t left) {
    uint16_t buf[kLanes] = {};
    std::memcpy(buf, p, left * sizeof *p);
    return load_bf16(buf);
  }
  static void store_bf16(uint16_t* p, V v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow(v));
  }
  static void store_bf16(uint16_t* p, V v, size_t left) {
    uint16_t buf[kLanes];
    store_bf16(buf, v);
    std::memcpy(p, buf, left * sizeof *p);
  }

  // a, b hold pairs 0-3 and 4-7; shuffle_ps picks per 128-bit half [g0 g1 g4 g5 | g2 g3 g6 g7].
  static void split_pairs(V a, V b, V& g, V& u) {
    g = _mm256_castsi256_ps(in_order(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88))));
    u = _mm256_castsi256_ps(in_order(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xdd))));
  }
  static void load_pairs_f32(const float* p, V& g, V& u) {
    split_pairs(_mm256_loadu_ps(p), _mm256_loadu_ps(p + kLanes), g, u);
  }
  static void load_pairs_f32(const float* p, V& g, V& u, size_t left) {
    const size_t words = 2 * left;
    const V a = _mm256_maskload_ps(p, lanes_below(words < kLanes ? words : kLanes));
    const V b = _mm256_maskload_ps(p + kLanes, lanes_below(words > kLanes ? words - kLanes : 0));
    split_pairs(a, b, g, u);
  }
  // A (gate, up) bf16 pair is one 32-bit word, gate in the low half.
  static void widen_pairs(__m256i w, V& g, V& u) {
    g = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    u = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static void load_pairs_bf16(const uint16_t* p, V& g, V& u) {
    widen_pairs(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), g, u);
  }
  static void load_pairs_bf16(const uint16_t* p, V& g, V& u, size_t left) {
    widen_pairs(_mm256_maskload_epi32(reinterpret_cast<const int*>(p), lanes_below(left)), g, u);
  }
};

// ---- W13 even/odd split ---------------------------------------------------------------------

inline __m256i load(const unsigned char* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline void store(unsigned char* p, __m256i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}

// The three word sizes differ only in how two vectors of pairs become a vector of evens and
// one of odds (split) and back (zip).
struct Words16 {
  static constexpr size_t kSize = 2;
  static void split(__m256i a, __m256i b, __m256i& e, __m256i& o) {
    const __m256i low = _mm256_set1_epi32(0xffff);
    e = in_order(_mm256_packus_epi32(_mm256_and_si256(a, low), _mm256_and_si256(b, low)));
    o = in_order(_mm256_packus_epi32(_mm256_srli_epi32(a, 16), _mm256_srli_epi32(b, 16)));
  }
  static void zip(__m256i e, __m256i o, __m256i& lo, __m256i& hi) {
    e = in_order(e);
    o = in_order(o);
    lo = _mm256_unpacklo_epi16(e, o);
    hi = _mm256_unpackhi_epi16(e, o);
  }
};
struct Words32 {
  static constexpr size_t kSize = 4;
  static void split(__m256i a, __m256i b, __m256i& e, __m256i& o) {
    const __m256 fa = _mm256_castsi256_ps(a), fb = _mm256_castsi256_ps(b);
    e = in_order(_mm256_castps_si256(_mm256_shuffle_ps(fa, fb, 0x88)));
    o = in_order(_mm256_castps_si256(_mm256_shuffle_ps(fa, fb, 0xdd)));
  }
  static void zip(__m256i e, __m256i o, __m256i& lo, __m256i& hi) {
    e = in_order(e);
    o = in_order(o);
    lo = _mm256_unpacklo_epi32(e, o);
    hi = _mm256_unpackhi_epi32(e, o);
  }
};
struct Words64 {
  static constexpr size_t kSize = 8;
  static void split(__m256i a, __m256i b, __m256i& e, __m256i& o) {
    e = in_order(_mm256_unpacklo_epi64(a, b));
    o = in_order(_mm256_unpackhi_epi64(a, b));
  }
  static void zip(__m256i e, __m256i o, __m256i& lo, __m256i& hi) {
    e = in_order(e);
    o = in_order(o);
    lo = _mm256_unpacklo_epi64(e, o);
    hi = _mm256_unpackhi_epi64(e, o);
  }
};

constexpr size_t kVectorBytes = 32;

// Front to back, each vector pair loaded before its evens are stored (even may equal in).
template <class Words>
void split(const void* in, void* even, void* odd, size_t n) {
  constexpr size_t w = Words::kSize, step = kVectorBytes / w;  // pairs per iteration
  const auto* src = static_cast<const unsigned char*>(in);
  auto* e = static_cast<unsigned char*>(even);
  auto* o = static_cast<unsigned char*>(odd);
  size_t j = 0;
  for (; j + step <= n; j += step) {
    __m256i ev, od;
    Words::split(load(src + 2 * j * w), load(src + 2 * j * w + kVectorBytes), ev, od);
    store(e + j * w, ev);
    store(o + j * w, od);
  }
  split_words<w>(src, e, o, j, n);
}

// Front to back, each vector of evens and odds loaded before its pairs are stored (odd may
// be the second half of out).
template <class Words>
void zip(const void* even, const void* odd, void* out, size_t n) {
  constexpr size_t w = Words::kSize, step = kVectorBytes / w;
  const auto* e = static_cast<const unsigned char*>(even);
  const auto* o = static_cast<const unsigned char*>(odd);
  auto* dst = static_cast<unsigned char*>(out);
  size_t j = 0;
  for (; j + step <= n; j += step) {
    __m256i lo, hi;
    Words::zip(load(e + j * w), load(o + j * w), lo, hi);
    store(dst + 2 * j * w, lo);
    store(dst + 2 * j * w + kVectorBytes, hi);
  }
  zip_words<w>(e, o, dst, j, n);
}

}  // namespace

const ElementwiseTable& avx2_elementwise() {
  static const ElementwiseTable table = {"avx2",
                                         exp_f32<Avx2>,
                                         sigmoid_f32<Avx2>,
                                         tanh_f32<Avx2>,
                                         erf_f32<Avx2>,
                                         gated_f32<Avx2>,
                                         gated_bf16<Avx2>,
                                         gated_pairs_f32<Avx2>,
                                         gated_pairs_bf16<Avx2>,
                                         split<Words16>,
                                         split<Words32>,
                                         split<Words64>,
                                         zip<Words16>,
                                         zip<Words32>,
                                         zip<Words64>};
  return table;
}

}  // namespace isa
}  // namespace moe
