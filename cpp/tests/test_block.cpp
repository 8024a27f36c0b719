// moe_block_forward (moe/block.cpp): router logits, routing, routed experts, shared expert and
// its sigmoid gate in one call, against a float64 reference written here, and bit for bit
// against the same parts called one by one.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "test_harness.h"

namespace {

using moetest::Rng;

// Odd sizes on purpose: no dimension is a multiple of a vector width or a panel.
constexpr size_t E = 5, H = 37, I = 19, Is = 13, K = 2, T = 9;

std::vector<float> random_values(Rng& rng, size_t n, float scale) {
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(-scale, scale);
  return v;
}

moe::MoeConfig config(size_t experts, size_t intermediate, size_t top_k) {
  moe::MoeConfig c;
  c.num_experts = experts;
  c.hidden_size = H;
  c.intermediate_size = intermediate;
  c.top_k = top_k;
  c.activation.kind = moe::Activation::silu;
  c.w13_layout = moe::W13Layout::halves;
  c.weight_format = moe::WeightFormat::f32;
  c.threads = 2;
  return c;
}

moe::MoeWeights weights(const std::vector<float>& w13, const std::vector<float>& w2) {
  moe::MoeWeights w;
  w.w13 = {moe::WeightFormat::f32, w13.data(), nullptr};
  w.w2 = {moe::WeightFormat::f32, w2.data(), nullptr};
  return w;
}

// One expert's gated MLP (silu, halves) in float64, added to acc with weight `scale`.
void ref_expert(const std::vector<float>& w13, const std::vector<float>& w2, size_t e, size_t inter,
                const float* x, double scale, double* acc) {
  std::vector<double> a(inter);
  for (size_t j = 0; j < inter; ++j) {
    double g = 0, u = 0;
    for (size_t h = 0; h < H; ++h) {
      g += double(w13[(e * 2 * inter + j) * H + h]) * x[h];
      u += double(w13[(e * 2 * inter + inter + j) * H + h]) * x[h];
    }
    a[j] = g / (1 + std::exp(-g)) * u;
  }
  for (size_t h = 0; h < H; ++h) {
    double y = 0;
    for (size_t j = 0; j < inter; ++j) y += double(w2[(e * H + h) * inter + j]) * a[j];
    acc[h] += scale * y;
  }
}

struct Block {
  std::vector<float> router_w, router_b, w13, w2, sw13, sw2, gate;
  explicit Block(Rng& rng)
      : router_w(random_values(rng, E * H, 1.0f)), router_b(random_values(rng, E, 0.5f)),
        w13(random_values(rng, E * 2 * I * H, 0.3f)), w2(random_values(rng, E * H * I, 0.3f)),
        sw13(random_values(rng, 2 * Is * H, 0.3f)), sw2(random_values(rng, H * Is, 0.3f)),
        gate(random_values(rng, H, 0.3f)) {}

  // topk-softmax routing of float64 logits, then both parts, in float64.
  std::vector<double> reference(const std::vector<float>& x, bool with_gate) const {
    std::vector<double> out(T * H, 0.0);
    for (size_t t = 0; t < T; ++t) {
      const float* xt = &x[t * H];
      std::vector<double> logits(E);
      for (size_t e = 0; e < E; ++e) {
        double s = router_b[e];
        for (size_t h = 0; h < H; ++h) s += double(router_w[e * H + h]) * xt[h];
        logits[e] = s;
      }
      std::vector<size_t> order(E);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
      double sum = 0;
      for (size_t k = 0; k < K; ++k) sum += std::exp(logits[order[k]] - logits[order[0]]);
      for (size_t k = 0; k < K; ++k) {
        ref_expert(w13, w2, order[k], I, xt, std::exp(logits[order[k]] - logits[order[0]]) / sum, &out[t * H]);
      }
      double s = 1;
      if (with_gate) {
        double g = 0;
        for (size_t h = 0; h < H; ++h) g += double(gate[h]) * xt[h];
        s = 1 / (1 + std::exp(-g));
      }
      ref_expert(sw13, sw2, 0, Is, xt, s, &out[t * H]);
    }
    return out;
  }
};

const moe::RoutingParams kTopkSoftmax{};

}  // namespace

TEST(block_forward_matches_float64_reference_f32_and_bf16) {
  Rng rng(0xB10C);
  const Block b(rng);
  const moe::MoeLayer experts(config(E, I, K), weights(b.w13, b.w2));
  const moe::MoeLayer shared(config(1, Is, 1), weights(b.sw13, b.sw2));
  const moe::Router router(E, H, K, kTopkSoftmax, moe::DType::f32, b.router_w.data(), b.router_b.data());
  const moe::Router gate(1, H, 1, kTopkSoftmax, moe::DType::f32, b.gate.data(), nullptr);
  const std::vector<float> x = random_values(rng, T * H, 1.0f);
  std::vector<uint16_t> xb(T * H);
  for (size_t i = 0; i < x.size(); ++i) xb[i] = moe::f32_to_bf16(x[i]);
  std::vector<float> xw(T * H);  // the bf16 values, widened
  for (size_t i = 0; i < x.size(); ++i) xw[i] = moetest::bf16_bits_to_f32(xb[i]);
  for (bool with_gate : {true, false}) {
    const moe::MoeBlockParts parts{&experts, &router, &shared, with_gate ? &gate : nullptr};
    std::vector<float> out(T * H, moetest::quiet_nan());
    moe::moe_block_forward(parts, moe::DType::f32, x.data(), T, {}, out.data());
    CHECK_ERROR(moetest::relative_error(b.reference(x, with_gate), out.data()), moetest::kTolF32,
                "f32 gate=" << with_gate);
    std::vector<uint16_t> outb(T * H, moetest::kBf16QuietNan);
    moe::moe_block_forward(parts, moe::DType::bf16, xb.data(), T, {}, outb.data());
    CHECK_ERROR(moetest::relative_error(b.reference(xw, with_gate), outb.data()), moetest::kTolBf16,
                "bf16 gate=" << with_gate);
  }
}

TEST(block_forward_equals_its_parts_called_one_by_one) {
  Rng rng(0xB10D);
  const Block b(rng);
  const moe::MoeLayer experts(config(E, I, K), weights(b.w13, b.w2));
  const moe::MoeLayer shared(config(1, Is, 1), weights(b.sw13, b.sw2));
  const moe::Router router(E, H, K, kTopkSoftmax, moe::DType::f32, b.router_w.data(), b.router_b.data());
  const std::vector<float> x = random_values(rng, T * H, 1.0f);
  // By hand: logits, routing, each part, the f32 sum (no gate: scale 1).
  std::vector<float> logits(T * E), route_w(T * K), routed(T * H), alone(T * H);
  std::vector<int32_t> ids(T * K);
  router.logits(moe::DType::f32, x.data(), T, logits.data(), 2);
  router.select(logits.data(), T, ids.data(), route_w.data());
  experts.forward(moe::DType::f32, x.data(), T, ids.data(), route_w.data(), routed.data());
  const std::vector<int32_t> zeros(T, 0);
  const std::vector<float> ones(T, 1.0f);
  shared.forward(moe::DType::f32, x.data(), T, zeros.data(), ones.data(), alone.data());
  for (size_t i = 0; i < routed.size(); ++i) routed[i] += alone[i];

  std::vector<float> out(T * H, moetest::quiet_nan());
  moe::moe_block_forward({&experts, &router, &shared, nullptr}, moe::DType::f32, x.data(), T, {}, out.data());
  CHECK_MSG(std::memcmp(out.data(), routed.data(), out.size() * sizeof(float)) == 0, "block != parts");
  // Given logits, and given ids and weights, route to the same output.
  std::vector<float> by_logits(T * H, moetest::quiet_nan()), by_ids(T * H, moetest::quiet_nan());
  moe::moe_block_forward({&experts, &router, &shared, nullptr}, moe::DType::f32, x.data(), T,
                         {logits.data(), nullptr, nullptr}, by_logits.data());
  moe::moe_block_forward({&experts, &router, &shared, nullptr}, moe::DType::f32, x.data(), T,
                         {nullptr, ids.data(), route_w.data()}, by_ids.data());
  CHECK(std::memcmp(by_logits.data(), routed.data(), out.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(by_ids.data(), routed.data(), out.size() * sizeof(float)) == 0);
  // Without a shared expert the block is the routed experts alone.
  std::vector<float> plain(T * H, moetest::quiet_nan()), direct(T * H);
  moe::moe_block_forward({&experts, &router, nullptr, nullptr}, moe::DType::f32, x.data(), T, {}, plain.data());
  experts.forward(moe::DType::f32, x.data(), T, ids.data(), route_w.data(), direct.data());
  CHECK(std::memcmp(plain.data(), direct.data(), plain.size() * sizeof(float)) == 0);
}

TEST(block_forward_refuses_non_finite_inputs_and_writes_nothing) {
  Rng rng(0xB10E);
  const Block b(rng);
  const moe::MoeLayer experts(config(E, I, K), weights(b.w13, b.w2));
  const moe::MoeLayer shared(config(1, Is, 1), weights(b.sw13, b.sw2));
  const moe::Router router(E, H, K, kTopkSoftmax, moe::DType::f32, b.router_w.data(), nullptr);
  const moe::Router no_weights(E, H, K, kTopkSoftmax, moe::DType::f32, nullptr, nullptr);
  const moe::Router gate(1, H, 1, kTopkSoftmax, moe::DType::f32, b.gate.data(), nullptr);
  std::vector<float> x = random_values(rng, T * H, 1.0f);
  x[3 * H + 5] = moetest::quiet_nan();
  std::vector<float> logits(T * E, 0.25f);
  logits[2 * E + 1] = std::numeric_limits<float>::infinity();
  std::vector<float> out(T * H, 7.0f);
  const std::vector<float> untouched = out;
  CHECK_THROWS(moe::InvalidArgument,
               moe::moe_block_forward({&experts, &router, nullptr, nullptr}, moe::DType::f32, x.data(), T, {}, out.data()),
               "NaN hidden through the router");
  CHECK_THROWS(moe::InvalidArgument,
               moe::moe_block_forward({&experts, &router, &shared, &gate}, moe::DType::f32, x.data(), T, {}, out.data()),
               "NaN hidden through the gate");
  CHECK_THROWS(moe::InvalidArgument,
               moe::moe_block_forward({&experts, &no_weights, nullptr, nullptr}, moe::DType::f32, x.data(), T,
                                      {logits.data(), nullptr, nullptr}, out.data()),
               "infinite logit");
  CHECK_THROWS(moe::InvalidArgument,
               moe::moe_block_forward({&experts, &no_weights, nullptr, nullptr}, moe::DType::f32, x.data(), T, {}, out.data()),
               "no route and no router weights");
  CHECK_THROWS(moe::InvalidArgument,
               moe::moe_block_forward({&shared, &router, nullptr, nullptr}, moe::DType::f32, x.data(), T, {}, out.data()),
               "router shape != experts'");
  CHECK(out == untouched);
}
