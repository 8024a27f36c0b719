// NEON elementwise kernels: vector math and gated activations (elementwise_math.h over the Neon
// struct below) and the W13 even/odd split (LD2/ST2). Baseline armv8-a, compiled with
// -march=armv8-a. The same functions serve the "sve" kernel set (sve_elementwise()): every SVE
// CPU has NEON, and elementwise_math.h keeps vectors in structs, which SVE's sizeless vectors
// cannot be. ODR rule: ukernel/ukernel.h.
#include <arm_neon.h>

#include <cstring>

#include "ukernel/elementwise_math.h"

namespace moe {
namespace isa {
namespace {

struct Neon {
  using V = float32x4_t;
  using M = uint32x4_t;
  static constexpr size_t kLanes = 4;

  static V set(float v) { return vdupq_n_f32(v); }
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V fmadd(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static V fnmadd(V a, V b, V c) { return vfmsq_f32(c, a, b); }
  // FMIN/FMAX return NaN when either operand is NaN; `limit` never is.
  static V min_nan(V limit, V x) { return vminq_f32(limit, x); }
  static V max_nan(V limit, V x) { return vmaxq_f32(limit, x); }
  static V abs(V x) { return vabsq_f32(x); }
  static V neg_abs(V x) { return vnegq_f32(vabsq_f32(x)); }
  static V copysign(V mag, V sgn) {
    return vbslq_f32(vdupq_n_u32(0x80000000u), sgn, mag);
  }
  static V round(V x) { return vrndnq_f32(x); }
  // 2^n as two normal factors 2^(n>>1) and 2^(n - (n>>1)), each in [-75, 64]: y * 2^(n>>1) is
  // exact, so a subnormal or infinite result is rounded once.
  static V scale(V y, V n) {
    const int32x4_t ni = vcvtnq_s32_f32(n);
    const int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    const int32x4_t bias = vdupq_n_s32(127);
    const V f1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
    const V f2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
    return vmulq_f32(vmulq_f32(y, f1), f2);
  }
  static M lt(V a, V b) { return vcltq_f32(a, b); }
  static V select(M m, V if_true, V if_false) { return vbslq_f32(m, if_true, if_false); }

  static V load_f32(const float* p) { return vld1q_f32(p); }
  static V load_f32(const float* p, size_t left) {
    float buf[kLanes] = {};
    std::memcpy(buf, p, left * sizeof *p);
    return vld1q_f32(buf);
  }
  static void store_f32(float* p, V v) { vst1q_f32(p, v); }
  static void store_f32(float* p, V v, size_t left) {
    float buf[kLanes];
    vst1q_f32(buf, v);
    std::memcpy(p, buf, left * sizeof *p);
  }

  static V widen(uint16x4_t h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }
  // f32_to_bf16 of bf16.cpp on 4 lanes: round to nearest even; NaN keeps its top bits, quieted.
  static uint16x4_t narrow(V v) {
    const uint32x4_t bits = vreinterpretq_u32_f32(v);
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(bits, vaddq_u32(lsb, vdupq_n_u32(0x7fff))), 16);
    const uint32x4_t nan = vorrq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(0x40));
    const uint32x4_t is_nan = vcgtq_u32(vandq_u32(bits, vdupq_n_u32(0x7fffffffu)), vdupq_n_u32(0x7f800000u));
    return vmovn_u32(vbslq_u32(is_nan, nan, rounded));
  }
  static V load_bf16(const uint16_t* p) { return widen(vld1_u16(p)); }
  static V load_bf16(const uint16_t* p, size_t left) {
    uint16_t buf[kLanes] = {};
    std::memcpy(buf, p, left * sizeof *p);
    return load_bf16(buf);
  }
  static void store_bf16(uint16_t* p, V v) { vst1_u16(p, narrow(v)); }
  static void store_bf16(uint16_t* p, V v, size_t left) {
    uint16_t buf[kLanes];
    store_bf16(buf, v);
    std::memcpy(p, buf, left * sizeof *p);
  }

  // LD2 splits pairs into gates and ups.
  static void load_pairs_f32(const float* p, V& g, V& u) {
    const float32x4x2_t pairs = vld2q_f32(p);
    g = pairs.val[0];
    u = pairs.val[1];
  }
  static void load_pairs_f32(const float* p, V& g, V& u, size_t left) {
    float buf[2 * kLanes] = {};
    std::memcpy(buf, p, 2 * left * sizeof *p);
    load_pairs_f32(buf, g, u);
  }
  // A (gate, up) bf16 pair is one 32-bit word, gate in the low half.
  static void widen_pairs(uint32x4_t w, V& g, V& u) {
    g = vreinterpretq_f32_u32(vshlq_n_u32(w, 16));
    u = vreinterpretq_f32_u32(vandq_u32(w, vdupq_n_u32(0xffff0000u)));
  }
  static void load_pairs_bf16(const uint16_t* p, V& g, V& u) {
    widen_pairs(vreinterpretq_u32_u16(vld1q_u16(p)), g, u);
  }
  static void load_pairs_bf16(const uint16_t* p, V& g, V& u, size_t left) {
    uint16_t buf[2 * kLanes] = {};
    std::memcpy(buf, p, 2 * left * sizeof *p);
    load_pairs_bf16(buf, g, u);
  }
};

// ---- W13 even/odd split ---------------------------------------------------------------------

// LD2 de-interleaves 2 q registers of W-byte words into evens and odds; ST2 interleaves back.
struct Words16 {
  static constexpr size_t kSize = 2;
  static void split(const unsigned char* in, unsigned char* e, unsigned char* o) {
    const uint16x8x2_t v = vld2q_u16(reinterpret_cast<const uint16_t*>(in));
    vst1q_u16(reinterpret_cast<uint16_t*>(e), v.val[0]);
    vst1q_u16(reinterpret_cast<uint16_t*>(o), v.val[1]);
  }
  static void zip(const unsigned char* e, const unsigned char* o, unsigned char* out) {
    const uint16x8x2_t v = {{vld1q_u16(reinterpret_cast<const uint16_t*>(e)),
                             vld1q_u16(reinterpret_cast<const uint16_t*>(o))}};
    vst2q_u16(reinterpret_cast<uint16_t*>(out), v);
  }
};
struct Words32 {
  static constexpr size_t kSize = 4;
  static void split(const unsigned char* in, unsigned char* e, unsigned char* o) {
    const uint32x4x2_t v = vld2q_u32(reinterpret_cast<const uint32_t*>(in));
    vst1q_u32(reinterpret_cast<uint32_t*>(e), v.val[0]);
    vst1q_u32(reinterpret_cast<uint32_t*>(o), v.val[1]);
  }
  static void zip(const unsigned char* e, const unsigned char* o, unsigned char* out) {
    const uint32x4x2_t v = {{vld1q_u32(reinterpret_cast<const uint32_t*>(e)),
                             vld1q_u32(reinterpret_cast<const uint32_t*>(o))}};
    vst2q_u32(reinterpret_cast<uint32_t*>(out), v);
  }
};
struct Words64 {
  static constexpr size_t kSize = 8;
  static void split(const unsigned char* in, unsigned char* e, unsigned char* o) {
    const uint64x2x2_t v = vld2q_u64(reinterpret_cast<const uint64_t*>(in));
    vst1q_u64(reinterpret_cast<uint64_t*>(e), v.val[0]);
    vst1q_u64(reinterpret_cast<uint64_t*>(o), v.val[1]);
  }
  static void zip(const unsigned char* e, const unsigned char* o, unsigned char* out) {
    const uint64x2x2_t v = {{vld1q_u64(reinterpret_cast<const uint64_t*>(e)),
                             vld1q_u64(reinterpret_cast<const uint64_t*>(o))}};
    vst2q_u64(reinterpret_cast<uint64_t*>(out), v);
  }
};

constexpr size_t kVectorBytes = 16;

// Front to back, each vector pair loaded before its evens are stored (even may equal in).
template <class Words>
void split(const void* in, void* even, void* odd, size_t n) {
  constexpr size_t w = Words::kSize, step = kVectorBytes / w;  // pairs per iteration
  const auto* src = static_cast<const unsigned char*>(in);
  auto* e = static_cast<unsigned char*>(even);
  auto* o = static_cast<unsigned char*>(odd);
  size_t j = 0;
  for (; j + step <= n; j += step) Words::split(src + 2 * j * w, e + j * w, o + j * w);
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
  for (; j + step <= n; j += step) Words::zip(e + j * w, o + j * w, dst + 2 * j * w);
  zip_words<w>(e, o, dst, j, n);
}

ElementwiseTable neon_functions(const char* name) {
  return {name,
          exp_f32<Neon>,
          sigmoid_f32<Neon>,
          tanh_f32<Neon>,
          erf_f32<Neon>,
          gated_f32<Neon>,
          gated_bf16<Neon>,
          gated_pairs_f32<Neon>,
          gated_pairs_bf16<Neon>,
          split<Words16>,
          split<Words32>,
          split<Words64>,
          zip<Words16>,
          zip<Words32>,
          zip<Words64>};
}

}  // namespace

const ElementwiseTable& neon_elementwise() {
  static const ElementwiseTable table = neon_functions("neon");
  return table;
}

#if defined(__linux__)
const ElementwiseTable& sve_elementwise() {
  static const ElementwiseTable table = neon_functions("sve");
  return table;
}
#endif

}  // namespace isa
}  // namespace moe
