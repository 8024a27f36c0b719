// Independent float64 references of docs/spec.md, written from the spec and not from the kernels:
// W13 row permutation, gated activations, routing and the MoE forward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"

namespace moetest {

// ---- W13 layout ------------------------------------------------------------------------------

// Row of the interleaved layout that holds row `r` of the halves layout (gate j -> 2j,
// up j -> 2j + 1).
inline size_t interleaved_row(size_t r, size_t intermediate) {
  return r < intermediate ? 2 * r : 2 * (r - intermediate) + 1;
}

// [outer, 2I, inner] halves -> interleaved (to_interleaved) or back, one element at a time.
template <typename T>
std::vector<T> permute_w13(const std::vector<T>& src, size_t outer, size_t intermediate,
                           size_t inner, bool to_interleaved) {
  std::vector<T> dst(src.size());
  const size_t rows = 2 * intermediate;
  for (size_t o = 0; o < outer; ++o)
    for (size_t r = 0; r < rows; ++r) {
      const size_t ri = interleaved_row(r, intermediate);
      const size_t from = to_interleaved ? r : ri, to = to_interleaved ? ri : r;
      for (size_t i = 0; i < inner; ++i)
        dst[(o * rows + to) * inner + i] = src[(o * rows + from) * inner + i];
    }
  return dst;
}

// [outer, rows, cols] -> [outer, cols, rows].
template <typename T>
std::vector<T> transpose_last2(const std::vector<T>& src, size_t outer, size_t rows, size_t cols) {
  std::vector<T> dst(src.size());
  for (size_t o = 0; o < outer; ++o)
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c)
        dst[(o * cols + c) * rows + r] = src[(o * rows + r) * cols + c];
  return dst;
}

// ---- Gated activations -----------------------------------------------------------------------

inline double ref_activation(const moe::ActivationParams& p, double g, double u) {
  if (std::isnan(g) || std::isnan(u)) return std::numeric_limits<double>::quiet_NaN();
  switch (p.kind) {
    case moe::Activation::swigluoai: {
      const double limit = p.swiglu_limit, alpha = p.swiglu_alpha;
      const double gc = g < limit ? g : limit;
      const double uc = u < -limit ? -limit : (u > limit ? limit : u);
      return gc / (1.0 + std::exp(-alpha * gc)) * (uc + 1.0);
    }
    case moe::Activation::silu:
      return g / (1.0 + std::exp(-g)) * u;
    case moe::Activation::gelu:
      return 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0))) * u;
    case moe::Activation::gelu_tanh:
      return 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

inline const char* activation_name(moe::Activation a) {
  switch (a) {
    case moe::Activation::swigluoai: return "swigluoai";
    case moe::Activation::silu: return "silu";
    case moe::Activation::gelu: return "gelu";
    case moe::Activation::gelu_tanh: return "gelu_tanh";
  }
  return "?";
}
constexpr moe::Activation kAllActivations[] = {moe::Activation::swigluoai, moe::Activation::silu,
                                               moe::Activation::gelu, moe::Activation::gelu_tanh};

// ---- Routing ---------------------------------------------------------------------------------

// Indices of the `k` largest of `v` restricted to `allowed`, by descending value, ties to the
// lower index.
inline std::vector<size_t> ref_topk(const std::vector<double>& v, size_t k,
                                    const std::vector<bool>& allowed) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < v.size(); ++i)
    if (allowed[i]) idx.push_back(i);
  std::sort(idx.begin(), idx.end(),
            [&](size_t a, size_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  idx.resize(std::min(k, idx.size()));
  return idx;
}

// One token of logits -> K ids and weights, docs/spec.md "Routing".
inline void ref_route(const moe::RoutingParams& p, const float* logits, size_t E, size_t K,
                      std::vector<int32_t>& ids, std::vector<double>& weights) {
  std::vector<double> x(logits, logits + E);
  const std::vector<bool> all(E, true);
  std::vector<size_t> chosen;
  std::vector<double> w(K);
  if (p.mode == moe::RoutingMode::topk_softmax) {
    chosen = ref_topk(x, K, all);
    double sum = 0;
    for (size_t k = 0; k < K; ++k) sum += (w[k] = std::exp(x[chosen[k]] - x[chosen[0]]));
    for (double& v : w) v /= sum;
  } else if (p.mode == moe::RoutingMode::softmax_topk) {
    const double mx = *std::max_element(x.begin(), x.end());
    std::vector<double> prob(E);
    double sum = 0;
    for (size_t e = 0; e < E; ++e) sum += (prob[e] = std::exp(x[e] - mx));
    for (double& v : prob) v /= sum;
    chosen = ref_topk(prob, K, all);
    double kept = 0;
    for (size_t k = 0; k < K; ++k) kept += (w[k] = prob[chosen[k]]);
    if (p.renormalize)
      for (double& v : w) v /= kept;
  } else {
    std::vector<double> score(E), choice(E);
    for (size_t e = 0; e < E; ++e) {
      score[e] = 1.0 / (1.0 + std::exp(-x[e]));
      choice[e] = score[e] + (p.correction_bias ? p.correction_bias[e] : 0.0);
    }
    const size_t G = p.num_groups, per_group = E / G;
    std::vector<double> group_score(G);
    for (size_t g = 0; g < G; ++g) {
      std::vector<double> members(choice.begin() + g * per_group,
                                  choice.begin() + (g + 1) * per_group);
      const std::vector<size_t> top2 = ref_topk(members, 2, std::vector<bool>(per_group, true));
      for (size_t i : top2) group_score[g] += members[i];
    }
    const std::vector<size_t> groups = ref_topk(group_score, p.topk_groups, std::vector<bool>(G, true));
    std::vector<bool> allowed(E, false);
    for (size_t g : groups)
      for (size_t e = g * per_group; e < (g + 1) * per_group; ++e) allowed[e] = true;
    chosen = ref_topk(choice, K, allowed);
    double sum = 0;
    for (size_t k = 0; k < K; ++k) sum += (w[k] = score[chosen[k]]);
    for (double& v : w) v = (p.renormalize ? v / sum : v) * p.routed_scaling_factor;
  }
  for (size_t k = 0; k < K; ++k) {
    ids.push_back(static_cast<int32_t>(chosen[k]));
    weights.push_back(w[k]);
  }
}

// ---- MoE forward -----------------------------------------------------------------------------

// A layer in the canonical form of docs/spec.md: W13 [E, 2I, H] halves, W2 [E, H, I], biases
// [E, 2I] halves and [E, H] (empty when absent). Values are already rounded to the weight dtype.
struct RefLayer {
  size_t E = 0, H = 0, I = 0;
  moe::ActivationParams act;
  std::vector<float> w13, b13, w2, b2;
};

// docs/spec.md "The MoE forward": x [T, H], ids/weights [T, K] -> out [T, H] (not rounded).
inline std::vector<double> ref_forward(const RefLayer& L, const std::vector<double>& x, size_t T,
                                       size_t K, const int32_t* ids, const float* weights,
                                       bool bf16_activations) {
  const size_t E = L.E, H = L.H, I = L.I;
  (void)E;
  std::vector<double> out(T * H, 0.0), h(2 * I), a(I);
  for (size_t t = 0; t < T; ++t)
    for (size_t k = 0; k < K; ++k) {
      const size_t e = static_cast<size_t>(ids[t * K + k]);
      for (size_t r = 0; r < 2 * I; ++r) {
        double acc = L.b13.empty() ? 0.0 : L.b13[e * 2 * I + r];
        for (size_t c = 0; c < H; ++c) acc += double(L.w13[(e * 2 * I + r) * H + c]) * x[t * H + c];
        h[r] = acc;
      }
      for (size_t j = 0; j < I; ++j) {
        a[j] = ref_activation(L.act, h[j], h[I + j]);
        if (bf16_activations) a[j] = round_bf16(static_cast<float>(a[j]));
      }
      for (size_t c = 0; c < H; ++c) {
        double y = L.b2.empty() ? 0.0 : L.b2[e * H + c];
        for (size_t j = 0; j < I; ++j) y += double(L.w2[(e * H + c) * I + j]) * a[j];
        out[t * H + c] += double(weights[t * K + k]) * y;
      }
    }
  return out;
}

}  // namespace moetest
