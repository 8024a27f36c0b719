// Expert selection (routing.cpp) against the float64 reference of docs/spec.md "Routing": ids
// exactly, weights to the f32 tolerance; ties to the lower index; bad input throws and writes
// nothing.
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"
#include "test_reference.h"

using namespace moetest;

namespace {

const char* mode_name(moe::RoutingMode m) {
  switch (m) {
    case moe::RoutingMode::topk_softmax: return "topk_softmax";
    case moe::RoutingMode::softmax_topk: return "softmax_topk";
    case moe::RoutingMode::sigmoid_grouped: return "sigmoid_grouped";
  }
  return "?";
}

std::string describe(const moe::RoutingParams& p, size_t T, size_t E, size_t K) {
  std::ostringstream os;
  os << mode_name(p.mode) << " T=" << T << " E=" << E << " K=" << K
     << " renormalize=" << p.renormalize;
  if (p.mode == moe::RoutingMode::sigmoid_grouped)
    os << " groups=" << p.num_groups << " topk_groups=" << p.topk_groups
       << " bias=" << (p.correction_bias != nullptr) << " scale=" << p.routed_scaling_factor;
  return os.str();
}

// Runs select_experts on pre-filled outputs and compares with the reference.
void check_routing(const moe::RoutingParams& p, const std::vector<float>& logits, size_t T,
                   size_t E, size_t K) {
  const std::string where = describe(p, T, E, K);
  std::vector<int32_t> ids(T * K, -1);
  std::vector<float> weights(T * K, quiet_nan());
  moe::select_experts(p, logits.data(), T, E, K, ids.data(), weights.data());
  std::vector<int32_t> ref_ids;
  std::vector<double> ref_weights;
  for (size_t t = 0; t < T; ++t) ref_route(p, &logits[t * E], E, K, ref_ids, ref_weights);
  for (size_t i = 0; i < T * K; ++i)
    CHECK_MSG(ids[i] == ref_ids[i], "token " << i / K << " slot " << i % K << ": id " << ids[i]
                                             << ", expected " << ref_ids[i] << ": " << where);
  CHECK_ERROR(relative_error(ref_weights, weights.data()), kTolF32, "weights: " << where);
}

// Tie-free logits in [-4, 4) (docs/spec.md: compare on tie-free data): per token a random
// permutation of E grid points 8/E apart, each moved by less than half the spacing. Logits of
// one token are then at least 4/E apart, so fp32 rounding of exp or sigmoid cannot make two of
// them equal (plain random floats can: 3.91409779 and 3.91409969 share one fp32 sigmoid).
std::vector<float> random_logits(size_t T, size_t E, Rng& rng) {
  std::vector<float> v(T * E);
  const float spacing = 8.0f / static_cast<float>(E);
  for (size_t t = 0; t < T; ++t) {
    std::vector<size_t> order(E);
    for (size_t e = 0; e < E; ++e) order[e] = e;
    for (size_t e = E; e > 1; --e) std::swap(order[e - 1], order[rng.below(e)]);
    for (size_t e = 0; e < E; ++e)
      v[t * E + e] = -4.0f + spacing * (static_cast<float>(order[e]) + rng.uniform(0.0f, 0.5f));
  }
  return v;
}

}  // namespace

TEST(routing_topk_softmax_and_softmax_topk_random) {
  Rng rng(0x7040);
  for (moe::RoutingMode mode : {moe::RoutingMode::topk_softmax, moe::RoutingMode::softmax_topk})
    for (bool renormalize : {false, true})
      for (size_t E : {3, 8, 32})
        for (size_t K : {1, 2, 3, 4})
          for (size_t T : {1, 3, 17}) {
            if (K > E) continue;
            moe::RoutingParams p;
            p.mode = mode;
            p.renormalize = renormalize;
            check_routing(p, random_logits(T, E, rng), T, E, K);
          }
  // qwen3-30b-a3b and gpt-oss-120b sized routers.
  for (moe::RoutingMode mode : {moe::RoutingMode::topk_softmax, moe::RoutingMode::softmax_topk}) {
    moe::RoutingParams p;
    p.mode = mode;
    p.renormalize = true;
    check_routing(p, random_logits(33, 128, rng), 33, 128, 8);
    check_routing(p, random_logits(5, 128, rng), 5, 128, 4);
  }
}

TEST(routing_sigmoid_grouped_deepseek_v3) {
  Rng rng(0xDEE9);
  const size_t E = 32, K = 8;
  std::vector<float> bias(E);
  for (float& b : bias) b = rng.uniform(-0.3f, 0.3f);
  for (bool renormalize : {false, true})
    for (bool with_bias : {false, true})
      for (size_t T : {1, 3, 17}) {
        moe::RoutingParams p;
        p.mode = moe::RoutingMode::sigmoid_grouped;
        p.renormalize = renormalize;
        p.num_groups = 8;
        p.topk_groups = 4;
        p.correction_bias = with_bias ? bias.data() : nullptr;
        p.routed_scaling_factor = 2.5f;
        const std::vector<float> logits = random_logits(T, E, rng);
        check_routing(p, logits, T, E, K);
        moe::RoutingParams v3 = p;  // the full DeepSeek-V3 router: 256 experts, bias scale alike
        std::vector<float> bias256(256);
        for (float& b : bias256) b = rng.uniform(-0.3f, 0.3f);
        v3.correction_bias = with_bias ? bias256.data() : nullptr;
        check_routing(v3, random_logits(T, 256, rng), T, 256, K);
        if (T == 17) {
          // The data must make groups and bias matter, or the comparison proves little.
          moe::RoutingParams flat = p, unbiased = p;
          flat.num_groups = flat.topk_groups = 1;
          unbiased.correction_bias = nullptr;
          std::vector<int32_t> a, b, c;
          std::vector<double> wa, wb, wc;
          for (size_t t = 0; t < T; ++t) {
            ref_route(p, &logits[t * E], E, K, a, wa);
            ref_route(flat, &logits[t * E], E, K, b, wb);
            ref_route(unbiased, &logits[t * E], E, K, c, wc);
          }
          CHECK_MSG(a != b, "test data: group selection never changes the choice");
          if (with_bias) CHECK_MSG(a != c, "test data: the bias never changes the choice");
        }
      }
}

TEST(routing_sigmoid_grouped_other_groupings) {
  Rng rng(0x5161);
  struct Grouping {
    size_t E, groups, topk_groups, K;
  };
  const Grouping cases[] = {{3, 1, 1, 1}, {3, 1, 1, 2}, {8, 1, 1, 4}, {32, 1, 1, 4},
                            {8, 4, 2, 2}, {8, 2, 1, 4}, {32, 4, 3, 1}, {32, 8, 8, 8}};
  for (const Grouping& g : cases)
    for (bool renormalize : {false, true})
      for (size_t T : {1, 3, 17}) {
        std::vector<float> bias(g.E);
        for (float& b : bias) b = rng.uniform(-0.2f, 0.2f);
        moe::RoutingParams p;
        p.mode = moe::RoutingMode::sigmoid_grouped;
        p.renormalize = renormalize;
        p.num_groups = g.groups;
        p.topk_groups = g.topk_groups;
        p.correction_bias = bias.data();
        p.routed_scaling_factor = renormalize ? 1.0f : 0.75f;
        check_routing(p, random_logits(T, g.E, rng), T, g.E, g.K);
      }
}

// Equal scores go to the lower expert index (and equal groups to the lower group).
TEST(routing_ties_go_to_lower_index) {
  struct Tie {
    moe::RoutingMode mode;
    size_t groups, topk_groups, K;
    std::vector<float> logits;
    std::vector<int32_t> ids;
  };
  const moe::RoutingMode TS = moe::RoutingMode::topk_softmax, ST = moe::RoutingMode::softmax_topk,
                         SG = moe::RoutingMode::sigmoid_grouped;
  const std::vector<float> equal(8, 0.5f), some = {1, 3, 3, 0, 3, -1, 3, 2};
  const std::vector<Tie> ties = {
      {TS, 1, 1, 4, equal, {0, 1, 2, 3}}, {TS, 1, 1, 3, some, {1, 2, 4}},
      {ST, 1, 1, 4, equal, {0, 1, 2, 3}}, {ST, 1, 1, 3, some, {1, 2, 4}},
      {SG, 1, 1, 3, some, {1, 2, 4}},     {SG, 4, 2, 2, equal, {0, 1, 2, 3}},
      // groups {1,3} {3,0} {3,-1} {3,2}: group 3 then group 0 kept; experts 1 and 6 (both 3).
      {SG, 4, 2, 2, some, {1, 6}},
      // groups {3,3} {3,3}: tie -> group 0.
      {SG, 2, 1, 2, {0, 3, 3, 0, 3, 0, 0, 3}, {1, 2}},
  };
  for (const Tie& tie : ties)
    for (bool renormalize : {false, true}) {
      moe::RoutingParams p;
      p.mode = tie.mode;
      p.renormalize = renormalize;
      p.num_groups = tie.groups;
      p.topk_groups = tie.topk_groups;
      const size_t E = tie.logits.size();
      std::vector<int32_t> expected(tie.ids.begin(), tie.ids.begin() + tie.K);
      std::vector<int32_t> ref_ids;
      std::vector<double> ref_w;
      ref_route(p, tie.logits.data(), E, tie.K, ref_ids, ref_w);
      CHECK_MSG(ref_ids == expected, "the test's reference disagrees with the hand-made case");
      check_routing(p, tie.logits, 1, E, tie.K);
    }
}

// A non-finite logit anywhere throws and leaves ids and weights exactly as they were.
TEST(routing_non_finite_logits_throw_and_write_nothing) {
  Rng rng(0xBAD);
  const size_t T = 3, E = 8, K = 2;
  const float bad_values[] = {quiet_nan(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
  for (moe::RoutingMode mode : {moe::RoutingMode::topk_softmax, moe::RoutingMode::softmax_topk,
                                moe::RoutingMode::sigmoid_grouped})
    for (float bad : bad_values)
      for (size_t where : {size_t{0}, T * E - 1, E + 3}) {
        moe::RoutingParams p;
        p.mode = mode;
        std::vector<float> logits = random_logits(T, E, rng);
        logits[where] = bad;
        std::vector<int32_t> ids(T * K, 0x5A5A5A5A);
        std::vector<float> weights(T * K, f32_from_bits(0x7FC0BEEFu));
        const std::vector<int32_t> ids_before = ids;
        const std::vector<float> weights_before = weights;
        CHECK_THROWS(moe::InvalidArgument,
                     moe::select_experts(p, logits.data(), T, E, K, ids.data(), weights.data()),
                     mode_name(mode) << " logit " << bad << " at " << where);
        CHECK_MSG(ids == ids_before &&
                      std::memcmp(weights.data(), weights_before.data(), T * K * sizeof(float)) == 0,
                  "outputs written before throwing: " << mode_name(mode) << " logit " << bad
                                                      << " at " << where);
      }
}

TEST(routing_parameters_that_do_not_fit_throw) {
  Rng rng(0xF17);
  struct Bad {
    moe::RoutingMode mode;
    size_t E, K, groups, topk_groups;
    const char* why;
  };
  const Bad bads[] = {
      {moe::RoutingMode::topk_softmax, 3, 4, 1, 1, "top_k > E"},
      {moe::RoutingMode::softmax_topk, 3, 4, 1, 1, "top_k > E"},
      {moe::RoutingMode::sigmoid_grouped, 3, 4, 1, 1, "top_k > E"},
      {moe::RoutingMode::sigmoid_grouped, 32, 8, 0, 0, "num_groups = 0"},
      {moe::RoutingMode::sigmoid_grouped, 32, 4, 5, 2, "num_groups does not divide E"},
      {moe::RoutingMode::sigmoid_grouped, 32, 4, 8, 0, "topk_groups = 0"},
      {moe::RoutingMode::sigmoid_grouped, 32, 4, 4, 5, "topk_groups > num_groups"},
      {moe::RoutingMode::sigmoid_grouped, 32, 8, 8, 1, "top_k > experts in the kept groups"},
  };
  for (const Bad& bad : bads) {
    moe::RoutingParams p;
    p.mode = bad.mode;
    p.num_groups = bad.groups;
    p.topk_groups = bad.topk_groups;
    const size_t T = 2;
    const std::vector<float> logits = random_logits(T, bad.E, rng);
    std::vector<int32_t> ids(T * bad.K, -3);
    std::vector<float> weights(T * bad.K, -3.0f);
    CHECK_THROWS(moe::InvalidArgument,
                 moe::select_experts(p, logits.data(), T, bad.E, bad.K, ids.data(), weights.data()),
                 describe(p, T, bad.E, bad.K) << " (" << bad.why << ")");
    CHECK_MSG(ids == std::vector<int32_t>(T * bad.K, -3) &&
                  weights == std::vector<float>(T * bad.K, -3.0f),
              "outputs written before throwing (" << bad.why << ")");
  }
}
