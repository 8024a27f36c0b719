// Scalar elementwise kernels: the reference the SIMD tables are tested against (std:: math in
// fp32, docs/spec.md "Gated activations"), the fallback on any CPU, and the one-channel
// moe::gated_activation. Compiled with the baseline flags, so it may use the standard library.
#include <cmath>
#include <cstring>
#include <string>

#include "ukernel/elementwise_table.h"

namespace moe {
namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kSqrt2OverPi = 0.7978845608028654f;  // sqrt(2/pi), as in docs/spec.md
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

// Load converts one stored element to f32, Store one f32 result back.
template <typename T, typename Load, typename Store>
void gated(const ActivationParams& params, const T* gate, const T* up, size_t step, T* out,
           size_t n, Load load, Store store) {
  with_activation(params, [&](auto op) {
    for (size_t j = 0; j < n; ++j) out[j] = store(op(load(gate[j * step]), load(up[j * step])));
  });
}

float same(float x) { return x; }

void gated_f32(const ActivationParams& p, const float* gate, const float* up, float* out,
               size_t n) {
  gated(p, gate, up, 1, out, n, same, same);
}
void gated_bf16(const ActivationParams& p, const uint16_t* gate, const uint16_t* up, uint16_t* out,
                size_t n) {
  gated(p, gate, up, 1, out, n, bf16_to_f32, f32_to_bf16);
}
void gated_pairs_f32(const ActivationParams& p, const float* pairs, float* out, size_t n) {
  gated(p, pairs, pairs + 1, 2, out, n, same, same);
}
void gated_pairs_bf16(const ActivationParams& p, const uint16_t* pairs, uint16_t* out, size_t n) {
  gated(p, pairs, pairs + 1, 2, out, n, bf16_to_f32, f32_to_bf16);
}

void exp_f32(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = std::exp(in[i]);
}
void sigmoid_f32(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = sigmoid(in[i]);
}
void tanh_f32(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = std::tanh(in[i]);
}
void erf_f32(const float* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = std::erf(in[i]);
}

// Words go through memcpy: the pointers may be less aligned than T (bf16 blocks of 4 or 8
// bytes are split as 32- or 64-bit words).
template <typename T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void store(unsigned char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

template <typename T>
void split(const void* in, void* even, void* odd, size_t n) {
  const auto* src = static_cast<const unsigned char*>(in);
  auto* e = static_cast<unsigned char*>(even);
  auto* o = static_cast<unsigned char*>(odd);
  constexpr size_t w = sizeof(T);
  for (size_t j = 0; j < n; ++j) {
    const T first = load<T>(src + 2 * j * w), second = load<T>(src + (2 * j + 1) * w);
    store(e + j * w, first);
    store(o + j * w, second);
  }
}

template <typename T>
void zip(const void* even, const void* odd, void* out, size_t n) {
  const auto* e = static_cast<const unsigned char*>(even);
  const auto* o = static_cast<const unsigned char*>(odd);
  auto* dst = static_cast<unsigned char*>(out);
  constexpr size_t w = sizeof(T);
  for (size_t j = 0; j < n; ++j) {  // front to back: odd may be the second half of out
    const T first = load<T>(e + j * w), second = load<T>(o + j * w);
    store(dst + 2 * j * w, first);
    store(dst + (2 * j + 1) * w, second);
  }
}

}  // namespace

float gated_activation(const ActivationParams& params, float gate, float up) {
  float result = 0.0f;
  with_activation(params, [&](auto op) { result = op(gate, up); });
  return result;
}

namespace isa {

const ElementwiseTable& scalar_elementwise() {
  static const ElementwiseTable table = {"scalar",
                                         exp_f32,
                                         sigmoid_f32,
                                         tanh_f32,
                                         erf_f32,
                                         gated_f32,
                                         gated_bf16,
                                         gated_pairs_f32,
                                         gated_pairs_bf16,
                                         split<uint16_t>,
                                         split<uint32_t>,
                                         split<uint64_t>,
                                         zip<uint16_t>,
                                         zip<uint32_t>,
                                         zip<uint64_t>};
  return table;
}

}  // namespace isa
}  // namespace moe
