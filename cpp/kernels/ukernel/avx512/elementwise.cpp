// AVX-512 (F, BW, VL, DQ) elementwise kernels: vector math and gated activations
// (elementwise_math.h over the Avx512 struct below) and the W13 even/odd split with two-source
// permutes. Compiled with the flags of ukernel/avx512/gemm.cpp; only called after cpu.cpp has checked
// the CPU and OS support them. ODR rule: ukernel/ukernel.h.

// GCC 12 reports the intrinsics' own placeholder for "undefined" lanes as uninitialized once
// they are inlined into the math below (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "ukernel/elementwise_math.h"

namespace moe {
namespace isa {
namespace {

// Two-source permute indices (vpermt2*: index bit log2(N) picks the second source), built at
// compile time for N lanes of T.
template <typename T, size_t N>
struct Indices {
  alignas(64) T lane[N];
};
enum class Pick { even, odd, zip_low, zip_high };
template <typename T, size_t N>
constexpr Indices<T, N> indices(Pick pick) {
  Indices<T, N> r{};
  for (size_t k = 0; k < N; ++k) {
    const size_t from_second = (k & 1) * N;
    switch (pick) {
      case Pick::even: r.lane[k] = static_cast<T>(2 * k); break;
      case Pick::odd: r.lane[k] = static_cast<T>(2 * k + 1); break;
      case Pick::zip_low: r.lane[k] = static_cast<T>(from_second + k / 2); break;
      case Pick::zip_high: r.lane[k] = static_cast<T>(from_second + N / 2 + k / 2); break;
    }
  }
  return r;
}
template <typename T, size_t N>
__m512i index_vector(Pick pick) {
  static constexpr Indices<T, N> table[] = {indices<T, N>(Pick::even), indices<T, N>(Pick::odd),
                                            indices<T, N>(Pick::zip_low),
                                            indices<T, N>(Pick::zip_high)};
  return _mm512_load_si512(table[static_cast<int>(pick)].lane);
}

inline __mmask16 lanes_below(size_t left) { return static_cast<__mmask16>((1u << left) - 1); }

struct Avx512 {
  using V = __m512;
  using M = __mmask16;
  static constexpr size_t kLanes = 16;

  static V set(float v) { return _mm512_set1_ps(v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  // vminps/vmaxps return the second operand when either is NaN.
  static V min_nan(V limit, V x) { return _mm512_min_ps(limit, x); }
  static V max_nan(V limit, V x) { return _mm512_max_ps(limit, x); }
  static V abs(V x) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x); }
  static V neg_abs(V x) { return _mm512_or_ps(_mm512_set1_ps(-0.0f), x); }
  static V copysign(V mag, V sgn) {
    const V sign = _mm512_set1_ps(-0.0f);
    return _mm512_or_ps(_mm512_andnot_ps(sign, mag), _mm512_and_ps(sign, sgn));
  }
  static V round(V x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static V scale(V y, V n) { return _mm512_scalef_ps(y, n); }  // y * 2^n, one rounding
  static M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static V select(M m, V if_true, V if_false) { return _mm512_mask_blend_ps(m, if_false, if_true); }

  static V load_f32(const float* p) { return _mm512_loadu_ps(p); }
  static V load_f32(const float* p, size_t left) {
    return _mm512_maskz_loadu_ps(lanes_below(left), p);
  }
  static void store_f32(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_f32(float* p, V v, size_t left) {
    _mm512_mask_storeu_ps(p, lanes_below(left), v);
  }

  static V widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  // f32_to_bf16 of bf16.cpp on 16 lanes (not vcvtneps2bf16, which flushes subnormals): round to
  // nearest even; NaN keeps its top bits, quieted. Result in the low 16 bits of each lane.
  static __m512i narrow(V v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16);
    const __m512i nan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(
        _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_blend_epi32(is_nan, rounded, nan);
  }
  static V load_bf16(const uint16_t* p) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_bf16(const uint16_t* p, size_t left) {
    return widen(_mm256_maskz_loadu_epi16(lanes_below(left), p));
  }
  static void store_bf16(uint16_t* p, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(narrow(v)));
  }
  static void store_bf16(uint16_t* p, V v, size_t left) {
    _mm512_mask_cvtepi32_storeu_epi16(p, lanes_below(left), narrow(v));
  }

  static void split_pairs(V a, V b, V& g, V& u) {
    g = _mm512_permutex2var_ps(a, index_vector<uint32_t, 16>(Pick::even), b);
    u = _mm512_permutex2var_ps(a, index_vector<uint32_t, 16>(Pick::odd), b);
  }
  static void load_pairs_f32(const float* p, V& g, V& u) {
    split_pairs(_mm512_loadu_ps(p), _mm512_loadu_ps(p + kLanes), g, u);
  }
  static void load_pairs_f32(const float* p, V& g, V& u, size_t left) {
    const size_t words = 2 * left;
    const V a = _mm512_maskz_loadu_ps(lanes_below(words < kLanes ? words : kLanes), p);
    const V b = _mm512_maskz_loadu_ps(lanes_below(words > kLanes ? words - kLanes : 0), p + kLanes);
    split_pairs(a, b, g, u);
  }
  // A (gate, up) bf16 pair is one 32-bit word, gate in the low half.
  static void widen_pairs(__m512i w, V& g, V& u) {
    g = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    u = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static void load_pairs_bf16(const uint16_t* p, V& g, V& u) {
    widen_pairs(_mm512_loadu_si512(p), g, u);
  }
  static void load_pairs_bf16(const uint16_t* p, V& g, V& u, size_t left) {
    widen_pairs(_mm512_maskz_loadu_epi32(lanes_below(left), p), g, u);
  }
};

// ---- W13 even/odd split ---------------------------------------------------------------------

// Per word size: kLanes words per vector, masked load / store of the first `count` words, and
// the two-source permute.
struct Words16 {
  static constexpr size_t kLanes = 32;
  using Index = uint16_t;
  static __mmask32 mask(size_t count) {
    return count >= kLanes ? ~__mmask32{0} : static_cast<__mmask32>((1u << count) - 1);
  }
  static __m512i load(const void* p, size_t count) {
    return _mm512_maskz_loadu_epi16(mask(count), p);
  }
  static void store(void* p, __m512i v, size_t count) {
    _mm512_mask_storeu_epi16(p, mask(count), v);
  }
  static __m512i permute(__m512i a, __m512i index, __m512i b) {
    return _mm512_permutex2var_epi16(a, index, b);
  }
};
struct Words32 {
  static constexpr size_t kLanes = 16;
  using Index = uint32_t;
  static __mmask16 mask(size_t count) {
    return static_cast<__mmask16>(count >= kLanes ? 0xffffu : (1u << count) - 1);
  }
  static __m512i load(const void* p, size_t count) {
    return _mm512_maskz_loadu_epi32(mask(count), p);
  }
  static void store(void* p, __m512i v, size_t count) {
    _mm512_mask_storeu_epi32(p, mask(count), v);
  }
  static __m512i permute(__m512i a, __m512i index, __m512i b) {
    return _mm512_permutex2var_epi32(a, index, b);
  }
};
struct Words64 {
  static constexpr size_t kLanes = 8;
  using Index = uint64_t;
  static __mmask8 mask(size_t count) {
    return static_cast<__mmask8>(count >= kLanes ? 0xffu : (1u << count) - 1);
  }
  static __m512i load(const void* p, size_t count) {
    return _mm512_maskz_loadu_epi64(mask(count), p);
  }
  static void store(void* p, __m512i v, size_t count) {
    _mm512_mask_storeu_epi64(p, mask(count), v);
  }
  static __m512i permute(__m512i a, __m512i index, __m512i b) {
    return _mm512_permutex2var_epi64(a, index, b);
  }
};

constexpr size_t kVectorBytes = 64;

// `pairs` (at most kLanes) pairs from src to e and o: two vectors of words in, one of evens and
// one of odds out.
template <class Words>
void split_vector(const unsigned char* src, unsigned char* e, unsigned char* o, size_t pairs,
                  __m512i even_index, __m512i odd_index) {
  constexpr size_t n = Words::kLanes;
  const size_t words = 2 * pairs;
  const __m512i a = Words::load(src, words < n ? words : n);
  const __m512i b = Words::load(src + kVectorBytes, words > n ? words - n : 0);
  Words::store(e, Words::permute(a, even_index, b), pairs);
  Words::store(o, Words::permute(a, odd_index, b), pairs);
}

// Front to back, each vector pair loaded before its evens are stored (even may equal in).
template <class Words>
void split(const void* in, void* even, void* odd, size_t n) {
  constexpr size_t w = kVectorBytes / Words::kLanes, step = Words::kLanes;
  const auto* src = static_cast<const unsigned char*>(in);
  auto* e = static_cast<unsigned char*>(even);
  auto* o = static_cast<unsigned char*>(odd);
  const __m512i even_index = index_vector<typename Words::Index, Words::kLanes>(Pick::even);
  const __m512i odd_index = index_vector<typename Words::Index, Words::kLanes>(Pick::odd);
  for (size_t j = 0; j < n; j += step) {
    const size_t pairs = n - j < step ? n - j : step;
    split_vector<Words>(src + 2 * j * w, e + j * w, o + j * w, pairs, even_index, odd_index);
  }
}

// The inverse of split_vector.
template <class Words>
void zip_vector(const unsigned char* e, const unsigned char* o, unsigned char* dst, size_t pairs,
                __m512i low_index, __m512i high_index) {
  constexpr size_t n = Words::kLanes;
  const size_t words = 2 * pairs;
  const __m512i ev = Words::load(e, pairs), od = Words::load(o, pairs);
  Words::store(dst, Words::permute(ev, low_index, od), words < n ? words : n);
  Words::store(dst + kVectorBytes, Words::permute(ev, high_index, od), words > n ? words - n : 0);
}

// Front to back, each vector of evens and odds loaded before its pairs are stored (odd may
// be the second half of out).
template <class Words>
void zip(const void* even, const void* odd, void* out, size_t n) {
  constexpr size_t w = kVectorBytes / Words::kLanes, step = Words::kLanes;
  const auto* e = static_cast<const unsigned char*>(even);
  const auto* o = static_cast<const unsigned char*>(odd);
  auto* dst = static_cast<unsigned char*>(out);
  const __m512i low_index = index_vector<typename Words::Index, Words::kLanes>(Pick::zip_low);
  const __m512i high_index = index_vector<typename Words::Index, Words::kLanes>(Pick::zip_high);
  for (size_t j = 0; j < n; j += step) {
    const size_t pairs = n - j < step ? n - j : step;
    zip_vector<Words>(e + j * w, o + j * w, dst + 2 * j * w, pairs, low_index, high_index);
  }
}

}  // namespace

const ElementwiseTable& avx512_elementwise() {
  static const ElementwiseTable table = {"avx512",
                                         exp_f32<Avx512>,
                                         sigmoid_f32<Avx512>,
                                         tanh_f32<Avx512>,
                                         erf_f32<Avx512>,
                                         gated_f32<Avx512>,
                                         gated_bf16<Avx512>,
                                         gated_pairs_f32<Avx512>,
                                         gated_pairs_bf16<Avx512>,
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
