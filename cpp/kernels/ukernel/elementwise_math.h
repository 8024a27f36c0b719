// Vector math (exp, sigmoid, tanh, erf), the gated activations and their loops, written once
// over an ISA struct S and included by the SIMD elementwise files (ukernel/avx2/elementwise.cpp,
// ukernel/avx512/elementwise.cpp) only. Everything here is in an anonymous namespace: each file compiles
// its own copy with its own flags (the ODR rule of ukernel/ukernel.h).
//
// S provides V (f32 vector), M (lane mask), kLanes, and static functions:
//   set(float), add, sub, mul, div, fmadd(a, b, c) = a*b + c, fnmadd(a, b, c) = c - a*b;
//   min_nan(limit, x), max_nan(limit, x): min / max that return x when x is NaN;
//   abs, neg_abs (-|x|), copysign(mag, sgn), round (to nearest, ties to even);
//   scale(y, n) = y * 2^n for integral n in [-150, 128], rounded once (subnormal results too);
//   lt(a, b) -> M, select(m, if_true, if_false);
//   load_f32, store_f32, load_bf16 (widen), store_bf16 (rounded exactly as f32_to_bf16),
//   load_pairs_f32(p, g, u), load_pairs_bf16(p, g, u): kLanes interleaved (gate, up) pairs;
//   the same with a trailing `left` argument for left < kLanes lanes: nothing past them is
//   read or written.
//
// Polynomial coefficients: weighted minimax fits (Lawson's iteration over Chebyshev nodes, in
// float64 against mpmath) rounded to f32. Errors against float64 are measured and bounded by
// cpp/tests/test_elementwise.cpp (kExpMaxUlp and friends).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ukernel/elementwise_table.h"

namespace moe {
namespace isa {
namespace {

// ---- exp ------------------------------------------------------------------------------------
// x = n ln2 + r with n = round(x log2 e), |r| <= ln2 / 2; n * kLn2Hi is exact (9 significant
// bits), so r carries one rounding. exp(r) = 1 + r + r^2 P(r), P the minimax fit of
// (exp(r) - 1 - r) / r^2 on [-ln2/2, ln2/2] (relative error 3.1e-9 of exp(r) before rounding).
constexpr float kLog2e = 1.44269504f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;  // ln 2 - kLn2Hi
constexpr float kExpP[] = {0.49999994f, 0.166665211f, 0.041668389f, 0.00836871006f,
                           0.00138146128f};
// exp overflows above 88.72 and rounds to 0 below -103.97: clamping to these keeps n in
// [-150, 128], where S::scale still gives inf and 0.
constexpr float kExpMax = 89.0f;
constexpr float kExpMin = -104.0f;

// ---- tanh -----------------------------------------------------------------------------------
// |y| < kTanhSplit: tanh(y) = y + y^3 P(y^2), P the minimax fit of (tanh(y) - y) / y^3
// (relative error 4.4e-9); above, 1 - 2 / (exp(2|y|) + 1) with the sign of y, exact 1 once
// exp(2|y|) is large.
constexpr float kTanhSplit = 0.625f;
constexpr float kTanhP[] = {-0.333332807f, 0.133314416f, -0.0537397154f, 0.020639088f,
                            -0.00570498733f};

// ---- erf ------------------------------------------------------------------------------------
// |x| < kErfSplit: erf(x) = x + x R(x^2), R the minimax fit of erf(x)/x - 1 (relative error
// 1.6e-8). kErfSplit <= t = |x|: erf(t) = 1 - exp(Q(t)), Q the fit of log(erfc(t)) on
// [kErfSplit, kErfMaxArg] weighted by erfc (absolute error 4.1e-11 of erf); past kErfMaxArg
// erf rounds to 1 in f32 (erfc(4) = 1.5e-8 < half an ulp of 1).
constexpr float kErfSplit = 0.921875f;
constexpr float kErfMaxArg = 4.0f;
constexpr float kErfR[] = {0.128379151f,   -0.376124948f,  0.112818167f,
                           -0.0267666206f, 0.00499318447f, -0.000599087216f};
constexpr float kErfQ[] = {0.000176360874f, -1.12952316f,    -0.633329988f,
                           -0.108299091f,   0.0251319408f,   -0.00417589815f,
                           0.000435477152f, -2.11841798e-05f};

// ---- gated activations (docs/spec.md) -------------------------------------------------------------
constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// c[0] + c[1] x + ... + c[N-1] x^(N-1)
template <class S, size_t N>
typename S::V horner(typename S::V x, const float (&c)[N]) {
  typename S::V p = S::set(c[N - 1]);
  for (size_t i = N - 1; i-- > 0;) p = S::fmadd(p, x, S::set(c[i]));
  return p;
}

// exp(x); +inf for x > 88.72, 0 below -103.97, NaN for NaN (max_nan/min_nan keep it).
template <class S>
typename S::V exp_v(typename S::V x) {
  using V = typename S::V;
  x = S::min_nan(S::set(kExpMax), S::max_nan(S::set(kExpMin), x));
  const V n = S::round(S::mul(x, S::set(kLog2e)));
  V r = S::fnmadd(n, S::set(kLn2Hi), x);
  r = S::fnmadd(n, S::set(kLn2Lo), r);
  const V y = S::add(S::fmadd(S::mul(r, r), horner<S>(r, kExpP), r), S::set(1.0f));
  return S::scale(y, n);
}

// 1 / (1 + exp(-x)) as the scalar reference computes it: exp only of -|x| (never inf), and
// exp(x) / (1 + exp(x)) for x < 0. NaN stays NaN (lt is false, the denominator is NaN).
template <class S>
typename S::V sigmoid_v(typename S::V x) {
  using V = typename S::V;
  const V one = S::set(1.0f);
  const V e = exp_v<S>(S::neg_abs(x));
  return S::div(S::select(S::lt(x, S::set(0.0f)), e, one), S::add(one, e));
}

// Computed on |y|, the sign of y put back last (so tanh(-0) = -0).
template <class S>
typename S::V tanh_v(typename S::V y) {
  using V = typename S::V;
  const V one = S::set(1.0f), t = S::abs(y), t2 = S::mul(t, t);
  const V small = S::fmadd(S::mul(t, t2), horner<S>(t2, kTanhP), t);
  const V e = exp_v<S>(S::add(t, t));
  const V large = S::sub(one, S::div(S::set(2.0f), S::add(e, one)));
  return S::copysign(S::select(S::lt(t, S::set(kTanhSplit)), small, large), y);  // NaN: large
}

template <class S>
typename S::V erf_v(typename S::V x) {
  using V = typename S::V;
  const V t = S::abs(x);
  const V small = S::fmadd(x, horner<S>(S::mul(x, x), kErfR), x);
  const V q = horner<S>(S::min_nan(S::set(kErfMaxArg), t), kErfQ);
  const V large = S::copysign(S::sub(S::set(1.0f), exp_v<S>(q)), x);
  return S::select(S::lt(t, S::set(kErfSplit)), small, large);  // NaN: large, which is NaN
}

template <class S>
struct SwigluOai {
  typename S::V alpha, limit, neg_limit;
  typename S::V operator()(typename S::V g, typename S::V u) const {
    const auto gc = S::min_nan(limit, g);
    const auto uc = S::max_nan(neg_limit, S::min_nan(limit, u));
    return S::mul(S::mul(gc, sigmoid_v<S>(S::mul(alpha, gc))), S::add(uc, S::set(1.0f)));
  }
};

template <class S>
struct Silu {
  typename S::V operator()(typename S::V g, typename S::V u) const {
    return S::mul(S::mul(g, sigmoid_v<S>(g)), u);
  }
};

template <class S>
struct Gelu {
  typename S::V operator()(typename S::V g, typename S::V u) const {
    const auto phi2 = S::add(S::set(1.0f), erf_v<S>(S::mul(g, S::set(kInvSqrt2))));
    return S::mul(S::mul(S::mul(S::set(0.5f), g), phi2), u);
  }
};

template <class S>
struct GeluTanh {
  typename S::V operator()(typename S::V g, typename S::V u) const {
    const auto cube = S::mul(S::mul(S::mul(S::set(kGeluCubic), g), g), g);
    const auto inner = S::mul(S::set(kSqrt2OverPi), S::add(g, cube));
    const auto phi2 = S::add(S::set(1.0f), tanh_v<S>(inner));
    return S::mul(S::mul(S::mul(S::set(0.5f), g), phi2), u);
  }
};

// Calls f with the vector functor of params.kind (the kind is checked by activation.cpp).
template <class S, typename F>
void with_op(const ActivationParams& params, F&& f) {
  switch (params.kind) {
    case Activation::swigluoai:
      return f(SwigluOai<S>{S::set(params.swiglu_alpha), S::set(params.swiglu_limit),
                            S::set(-params.swiglu_limit)});
    case Activation::silu: return f(Silu<S>{});
    case Activation::gelu: return f(Gelu<S>{});
    case Activation::gelu_tanh: return f(GeluTanh<S>{});
  }
}

// ---- loops: full vectors, then one partial vector -------------------------------------------

template <class S, typename Fn>
void unary(const float* in, float* out, size_t n, Fn f) {
  size_t i = 0;
  for (; i + S::kLanes <= n; i += S::kLanes) S::store_f32(out + i, f(S::load_f32(in + i)));
  if (i < n) S::store_f32(out + i, f(S::load_f32(in + i, n - i)), n - i);
}

template <class S>
void exp_f32(const float* in, float* out, size_t n) {
  unary<S>(in, out, n, [](typename S::V x) { return exp_v<S>(x); });
}
template <class S>
void sigmoid_f32(const float* in, float* out, size_t n) {
  unary<S>(in, out, n, [](typename S::V x) { return sigmoid_v<S>(x); });
}
template <class S>
void tanh_f32(const float* in, float* out, size_t n) {
  unary<S>(in, out, n, [](typename S::V x) { return tanh_v<S>(x); });
}
template <class S>
void erf_f32(const float* in, float* out, size_t n) {
  unary<S>(in, out, n, [](typename S::V x) { return erf_v<S>(x); });
}

template <class S>
void gated_f32(const ActivationParams& params, const float* gate, const float* up, float* out,
               size_t n) {
  with_op<S>(params, [&](const auto& op) {
    size_t j = 0;
    for (; j + S::kLanes <= n; j += S::kLanes)
      S::store_f32(out + j, op(S::load_f32(gate + j), S::load_f32(up + j)));
    if (j < n) {
      const size_t left = n - j;
      S::store_f32(out + j, op(S::load_f32(gate + j, left), S::load_f32(up + j, left)), left);
    }
  });
}

template <class S>
void gated_bf16(const ActivationParams& params, const uint16_t* gate, const uint16_t* up,
                uint16_t* out, size_t n) {
  with_op<S>(params, [&](const auto& op) {
    size_t j = 0;
    for (; j + S::kLanes <= n; j += S::kLanes)
      S::store_bf16(out + j, op(S::load_bf16(gate + j), S::load_bf16(up + j)));
    if (j < n) {
      const size_t left = n - j;
      S::store_bf16(out + j, op(S::load_bf16(gate + j, left), S::load_bf16(up + j, left)), left);
    }
  });
}

template <class S>
void gated_pairs_f32(const ActivationParams& params, const float* pairs, float* out, size_t n) {
  with_op<S>(params, [&](const auto& op) {
    typename S::V g, u;
    size_t j = 0;
    for (; j + S::kLanes <= n; j += S::kLanes) {
      S::load_pairs_f32(pairs + 2 * j, g, u);
      S::store_f32(out + j, op(g, u));
    }
    if (j < n) {
      S::load_pairs_f32(pairs + 2 * j, g, u, n - j);
      S::store_f32(out + j, op(g, u), n - j);
    }
  });
}

template <class S>
void gated_pairs_bf16(const ActivationParams& params, const uint16_t* pairs, uint16_t* out,
                      size_t n) {
  with_op<S>(params, [&](const auto& op) {
    typename S::V g, u;
    size_t j = 0;
    for (; j + S::kLanes <= n; j += S::kLanes) {
      S::load_pairs_bf16(pairs + 2 * j, g, u);
      S::store_bf16(out + j, op(g, u));
    }
    if (j < n) {
      S::load_pairs_bf16(pairs + 2 * j, g, u, n - j);
      S::store_bf16(out + j, op(g, u), n - j);
    }
  });
}

// ---- W13 even/odd split: the scalar ends of every ISA's vector loops ----------------------

// One pair (W-byte words) at a time, for the ends the vector loops leave.
template <size_t W>
void split_words(const unsigned char* in, unsigned char* even, unsigned char* odd, size_t from,
                 size_t to) {
  for (size_t j = from; j < to; ++j) {
    unsigned char pair[2 * W];
    std::memcpy(pair, in + 2 * j * W, 2 * W);
    std::memcpy(even + j * W, pair, W);
    std::memcpy(odd + j * W, pair + W, W);
  }
}
template <size_t W>
void zip_words(const unsigned char* even, const unsigned char* odd, unsigned char* out, size_t from,
               size_t to) {
  for (size_t j = from; j < to; ++j) {
    unsigned char pair[2 * W];
    std::memcpy(pair, even + j * W, W);
    std::memcpy(pair + W, odd + j * W, W);
    std::memcpy(out + 2 * j * W, pair, 2 * W);
  }
}

}  // namespace
}  // namespace isa
}  // namespace moe
