// Gated activations, scalar (SPEC.md "Gated activations"). Math in fp32; NaN propagates.
#include <cmath>

#include "moe_cpu.h"

namespace moe {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kSqrt2OverPi = 0.7978845608028654f;  // sqrt(2/pi), as in SPEC.md
constexpr float kGeluCubic = 0.044715f;

// Never evaluates exp of a large positive number, so it cannot produce inf/inf = NaN.
inline float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);  // NaN x also lands here and stays NaN
  return e / (1.0f + e);
}

// Comparisons with NaN are false, so these return NaN for NaN input (std::min/clamp may not).
inline float clamp_above(float x, float hi) { return x > hi ? hi : x; }
inline float clamp_between(float x, float lo, float hi) {
  return x > hi ? hi : (x < lo ? lo : x);
}

struct SwigluOai {
  float alpha, limit;
  float operator()(float g, float u) const {
    const float gc = clamp_above(g, limit);
    const float uc = clamp_between(u, -limit, limit);
    return gc * sigmoid(alpha * gc) * (uc + 1.0f);
  }
};

struct Silu {
  float operator()(float g, float u) const { return g * sigmoid(g) * u; }
};

struct Gelu {
  float operator()(float g, float u) const {
    return 0.5f * g * (1.0f + std::erf(g * kInvSqrt2)) * u;
  }
};

struct GeluTanh {
  float operator()(float g, float u) const {
    const float inner = kSqrt2OverPi * (g + kGeluCubic * g * g * g);
    return 0.5f * g * (1.0f + std::tanh(inner)) * u;
  }
};

// Calls f with the functor for params.kind, so the per-element loops are specialised per op.
template <typename F>
void with_activation(const ActivationParams& params, F&& f) {
  switch (params.kind) {
    case Activation::swigluoai: return f(SwigluOai{params.swiglu_alpha, params.swiglu_limit});
    case Activation::silu: return f(Silu{});
    case Activation::gelu: return f(Gelu{});
    case Activation::gelu_tanh: return f(GeluTanh{});
  }
  throw InvalidArgument("activation: unknown kind " +
                        std::to_string(static_cast<int>(params.kind)));
}

// Load converts one input element to f32, Store writes one f32 result.
template <typename Op, typename In, typename Out, typename Load, typename Store>
void apply_rows(Op op, W13Layout layout, const In* in, Out* out, size_t tokens, size_t half,
                Load load, Store store) {
  for (size_t t = 0; t < tokens; ++t) {
    const In* row = in + t * 2 * half;
    Out* dst = out + t * half;
    if (layout == W13Layout::interleaved) {
      for (size_t j = 0; j < half; ++j) dst[j] = store(op(load(row[2 * j]), load(row[2 * j + 1])));
    } else {
      for (size_t j = 0; j < half; ++j) dst[j] = store(op(load(row[j]), load(row[half + j])));
    }
  }
}

void check_layout(W13Layout layout) {
  if (layout != W13Layout::halves && layout != W13Layout::interleaved) {
    throw InvalidArgument("activation: unknown W13 layout " +
                          std::to_string(static_cast<int>(layout)));
  }
}

}  // namespace

float gated_activation(const ActivationParams& params, float gate, float up) {
  float result = 0.0f;
  with_activation(params, [&](auto op) { result = op(gate, up); });
  return result;
}

void gated_activation_f32(const ActivationParams& params, W13Layout layout, const float* in,
                          float* out, size_t tokens, size_t intermediate) {
  check_layout(layout);
  const auto same = [](float x) { return x; };
  with_activation(params, [&](auto op) {
    apply_rows(op, layout, in, out, tokens, intermediate, same, same);
  });
}

void gated_activation_bf16(const ActivationParams& params, W13Layout layout, const uint16_t* in,
                           uint16_t* out, size_t tokens, size_t intermediate) {
  check_layout(layout);
  with_activation(params, [&](auto op) {
    apply_rows(op, layout, in, out, tokens, intermediate, bf16_to_f32, f32_to_bf16);
  });
}

}  // namespace moe
