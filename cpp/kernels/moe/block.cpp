// The MoE block in one call: router logits, routing, routed experts, the shared expert and its
// gate, and the sum (docs/spec.md, "MoE block"). The facade makes one native call per forward,
// so nothing of the math runs on the JavaScript thread and no weights are copied per call.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "moe_cpu.h"

namespace moe {
namespace {

size_t dtype_bytes(DType d) { return d == DType::bf16 ? 2 : 4; }

// A router's logits or routing refused: the message names what the caller passed.
[[noreturn]] void rethrow_named(const InvalidArgument& err, const std::string& prefix,
                                const std::string& suffix = "") {
  throw InvalidArgument(prefix + err.what() + suffix);
}

void check_parts(const MoeBlockParts& p) {
  if (!p.experts || !p.router) throw InvalidArgument("block: experts and router are required");
  const MoeConfig& c = p.experts->config();
  if (p.router->num_experts() != c.routed_experts() || p.router->top_k() != c.top_k ||
      p.router->hidden_size() != c.hidden_size) {
    throw InvalidArgument("block: the router's shape does not match the experts'");
  }
  if (p.shared) {
    const MoeConfig& s = p.shared->config();
    if (s.num_experts != 1 || s.top_k != 1 || s.hidden_size != c.hidden_size) {
      throw InvalidArgument("block: the shared expert must have one expert, top-K 1 and the experts' hidden size");
    }
  }
  if (p.shared_gate) {
    if (!p.shared) throw InvalidArgument("block: a shared-expert gate without a shared expert");
    if (p.shared_gate->num_experts() != 1 || p.shared_gate->hidden_size() != c.hidden_size ||
        !p.shared_gate->has_weight()) {
      throw InvalidArgument("block: the shared-expert gate must be [1, H] weights");
    }
  }
}

}  // namespace

Router::Router(size_t num_experts, size_t hidden_size, size_t top_k, const RoutingParams& routing,
               DType weight_dtype, const void* weight, const float* bias)
    : num_experts_(num_experts), hidden_size_(hidden_size), top_k_(top_k), routing_(routing),
      weight_dtype_(weight_dtype) {
  if (num_experts == 0 || hidden_size == 0 || top_k == 0 || top_k > num_experts) {
    throw InvalidArgument("router: expected 1 <= top_k <= num_experts and hidden_size > 0");
  }
  if (routing.correction_bias) {
    correction_bias_.assign(routing.correction_bias, routing.correction_bias + num_experts);
    routing_.correction_bias = correction_bias_.data();
  }
  if (weight) {
    size_t bytes = 0;
    if (__builtin_mul_overflow(num_experts * dtype_bytes(weight_dtype), hidden_size, &bytes)) {
      throw InvalidArgument("router: the weights' size overflows");
    }
    const auto* w = static_cast<const uint8_t*>(weight);
    weight_.assign(w, w + bytes);
    if (bias) bias_.assign(bias, bias + num_experts);
  }
  // The rule against E and K, once, with neutral logits (select_experts checks both).
  std::vector<float> zeros(num_experts, 0.0f);
  std::vector<int32_t> ids(top_k);
  std::vector<float> weights(top_k);
  select(zeros.data(), 1, ids.data(), weights.data());
}

size_t Router::bytes() const { return weight_.size() + bias_.size() * sizeof(float); }

void Router::logits(DType hidden_dtype, const void* hidden, size_t tokens, float* logits,
                    unsigned threads) const {
  if (!has_weight()) throw InvalidArgument("router: no weights to compute logits with");
  router_logits(hidden_dtype, hidden, tokens, hidden_size_, weight_dtype_, weight_.data(),
                num_experts_, bias_.empty() ? nullptr : bias_.data(), logits, threads);
}

void Router::select(const float* logits, size_t tokens, int32_t* ids, float* weights) const {
  select_experts(routing_, logits, tokens, num_experts_, top_k_, ids, weights);
}

void moe_block_forward(const MoeBlockParts& parts, DType dtype, const void* hidden,
                       size_t tokens, const BlockRoute& route, void* out) {
  check_parts(parts);
  if (tokens == 0) return;
  const MoeLayer& experts = *parts.experts;
  const MoeConfig& c = experts.config();
  const size_t H = c.hidden_size, E = c.routed_experts(), K = c.top_k;
  const unsigned threads = c.threads;

  // With a shared expert both parts read f32 activations (bf16 widened once, exactly), so
  // that their f32 outputs are summed before the one rounding to the output dtype.
  std::vector<float> widened;
  const void* x = hidden;
  DType x_dtype = dtype;
  if (parts.shared && dtype == DType::bf16) {
    widened.resize(tokens * H);
    convert_bf16_to_f32(static_cast<const uint16_t*>(hidden), widened.data(), widened.size());
    x = widened.data();
    x_dtype = DType::f32;
  }

  // s(x) per token of the shared expert, checked before anything is written.
  std::vector<float> scales(parts.shared ? tokens : 0, 1.0f);
  if (parts.shared_gate) {
    parts.shared_gate->logits(DType::f32, x, tokens, scales.data(), threads);
    for (size_t t = 0; t < tokens; ++t) {
      const float v = scales[t];
      if (!std::isfinite(v)) {
        const char* what = std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
        throw InvalidArgument("hidden: the shared-expert gate computed from token " + std::to_string(t) +
                              " is " + what + "; check hidden for NaN or Infinity");
      }
      scales[t] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(v))));
    }
  }
  // The route: given, or routed from given logits, or from the router's own logits.
  std::vector<int32_t> ids_buf;
  std::vector<float> weights_buf;
  const int32_t* ids = route.ids;
  const float* route_weights = route.weights;
  if (!ids || !route_weights) {
    if (route.ids || route.weights) throw InvalidArgument("route: ids and weights go together");
    ids_buf.resize(tokens * K);
    weights_buf.resize(tokens * K);
    if (route.logits) {
      try {
        parts.router->select(route.logits, tokens, ids_buf.data(), weights_buf.data());
      } catch (const InvalidArgument& err) {
        rethrow_named(err, "route.");
      }
    } else {
      if (!parts.router->has_weight()) {
        throw InvalidArgument("route: required, as logits or ids and weights, because this layer has no router weights");
      }
      std::vector<float> logits(tokens * E);
      parts.router->logits(x_dtype, x, tokens, logits.data(), threads);
      try {
        parts.router->select(logits.data(), tokens, ids_buf.data(), weights_buf.data());
      } catch (const InvalidArgument& err) {
        rethrow_named(err, "hidden: the router logits computed from it are not finite (",
                      "); check hidden for NaN or Infinity");
      }
    }
    ids = ids_buf.data();
    route_weights = weights_buf.data();
  }

  if (!parts.shared) {
    experts.forward(dtype, hidden, tokens, ids, route_weights, out);
    return;
  }

  const std::vector<int32_t> shared_ids(tokens, 0);
  std::vector<float> shared_out(tokens * H);
  // Routed experts first: they validate the route before writing. For f32 output they write
  // straight into out; for bf16 into an f32 buffer rounded once at the end.
  std::vector<float> routed;
  float* sum = static_cast<float*>(out);
  if (dtype == DType::bf16) {
    routed.resize(tokens * H);
    sum = routed.data();
  }
  experts.forward(DType::f32, x, tokens, ids, route_weights, sum);
  parts.shared->forward(DType::f32, x, tokens, shared_ids.data(), scales.data(), shared_out.data());
  for (size_t i = 0; i < tokens * H; ++i) sum[i] += shared_out[i];
  if (dtype == DType::bf16) convert_f32_to_bf16(sum, static_cast<uint16_t*>(out), tokens * H);
}

}  // namespace moe
