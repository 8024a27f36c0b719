// Expert selection from router logits (docs/spec.md "Routing").
//
// Every selection scans candidates in ascending index order and only lets a strictly greater
// value overtake, so ties always go to the lower expert (or group) index.
// Sums of weights are accumulated in double; exp and the stored weights are fp32.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "moe_cpu.h"

namespace moe {
namespace {

// Same safe form as in activation.cpp: exp is only taken of non-positive numbers.
inline float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

// Keeps the k best (value, index) pairs seen so far, best first. Offer candidates in
// ascending index order: an equal value never overtakes, which is the tie rule.
class TopK {
 public:
  explicit TopK(size_t k) : k_(k), values_(k), ids_(k) {}
  void clear() { count_ = 0; }
  void offer(float value, size_t id) {
    if (count_ == k_ && !(value > values_[k_ - 1])) return;
    size_t pos = count_ < k_ ? count_++ : k_ - 1;
    for (; pos > 0 && value > values_[pos - 1]; --pos) {
      values_[pos] = values_[pos - 1];
      ids_[pos] = ids_[pos - 1];
    }
    values_[pos] = value;
    ids_[pos] = id;
  }
  size_t size() const { return count_; }
  float value(size_t slot) const { return values_[slot]; }
  size_t id(size_t slot) const { return ids_[slot]; }

 private:
  size_t k_;
  size_t count_ = 0;
  std::vector<float> values_;
  std::vector<size_t> ids_;
};

void check_finite(const char* name, const float* v, size_t count, size_t row_length) {
  for (size_t i = 0; i < count; ++i) {
    if (std::isfinite(v[i])) continue;
    const std::string where = row_length == 0
        ? std::to_string(i)
        : std::to_string(i / row_length) + ", " + std::to_string(i % row_length);
    const char* value = std::isnan(v[i]) ? "NaN" : v[i] > 0 ? "Infinity" : "-Infinity";
    throw InvalidArgument(std::string(name) + ": element [" + where + "] is " + value +
                          ", expected a finite number");
  }
}

void validate(const RoutingParams& p, const float* logits, size_t tokens, size_t e, size_t k) {
  if (p.mode != RoutingMode::topk_softmax && p.mode != RoutingMode::softmax_topk &&
      p.mode != RoutingMode::sigmoid_grouped) {
    throw InvalidArgument("routing: unknown mode " + std::to_string(static_cast<int>(p.mode)));
  }
  if (e == 0 || e > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw InvalidArgument("routing: number of experts must be in [1, 2^31 - 1], got " +
                          std::to_string(e));
  }
  if (k < 1 || k > e) {
    throw InvalidArgument("routing: top_k must be in [1, " + std::to_string(e) + "], got " +
                          std::to_string(k));
  }
  if (p.mode == RoutingMode::sigmoid_grouped) {
    const size_t g = p.num_groups;
    if (g < 1 || e % g != 0) {
      throw InvalidArgument("routing: num_groups must divide the " + std::to_string(e) +
                            " experts, got " + std::to_string(g));
    }
    if (p.topk_groups < 1 || p.topk_groups > g) {
      throw InvalidArgument("routing: topk_groups must be in [1, " + std::to_string(g) +
                            "], got " + std::to_string(p.topk_groups));
    }
    if (k > p.topk_groups * (e / g)) {
      throw InvalidArgument("routing: top_k " + std::to_string(k) + " exceeds the " +
                            std::to_string(p.topk_groups * (e / g)) +
                            " experts in the kept groups");
    }
    if (p.correction_bias) check_finite("correction_bias", p.correction_bias, e, 0);
    if (!std::isfinite(p.routed_scaling_factor)) {
      throw InvalidArgument("routing: routed_scaling_factor is not finite");
    }
  }
  check_finite("logits", logits, tokens * e, e);
}

// topk-softmax (gpt-oss): the K largest logits, then a softmax over just those K.
void topk_softmax(const float* logits, size_t e, size_t k, TopK& top, int32_t* ids,
                  float* weights) {
  top.clear();
  for (size_t i = 0; i < e; ++i) top.offer(logits[i], i);
  const float max = top.value(0);
  double sum = 0.0;
  for (size_t s = 0; s < k; ++s) {
    weights[s] = std::exp(top.value(s) - max);
    sum += weights[s];
  }
  for (size_t s = 0; s < k; ++s) {
    ids[s] = static_cast<int32_t>(top.id(s));
    weights[s] = static_cast<float>(weights[s] / sum);
  }
}

// softmax-topk (Mixtral, Qwen-MoE): fp32 softmax over all E, the K largest, optional renorm.
void softmax_topk(const float* logits, size_t e, size_t k, bool renormalize, TopK& top,
                  float* probs, int32_t* ids, float* weights) {
  float max = logits[0];
  for (size_t i = 1; i < e; ++i) max = logits[i] > max ? logits[i] : max;
  double sum = 0.0;
  for (size_t i = 0; i < e; ++i) {
    probs[i] = std::exp(logits[i] - max);
    sum += probs[i];
  }
  top.clear();
  for (size_t i = 0; i < e; ++i) {
    probs[i] = static_cast<float>(probs[i] / sum);
    top.offer(probs[i], i);
  }
  double kept = 0.0;
  for (size_t s = 0; s < k; ++s) kept += top.value(s);
  // kept >= 1/E > 0: the largest probability is at least the mean.
  const double scale = renormalize ? 1.0 / kept : 1.0;
  for (size_t s = 0; s < k; ++s) {
    ids[s] = static_cast<int32_t>(top.id(s));
    weights[s] = static_cast<float>(top.value(s) * scale);
  }
}

// Scratch for sigmoid_grouped, sized once per call.
struct GroupedScratch {
  std::vector<float> scores, choice;
  std::vector<char> kept;
  TopK groups;
  GroupedScratch(size_t e, size_t g, size_t topk_groups)
      : scores(e), choice(e), kept(g), groups(topk_groups) {}
};

// sigmoid-grouped (DeepSeek-V3). A group is scored by the sum of its two largest choice
// scores; a group of one expert (E == num_groups) is scored by that expert's choice score alone.
void sigmoid_grouped(const RoutingParams& p, const float* logits, size_t e, size_t k,
                     GroupedScratch& w, TopK& top, int32_t* ids, float* weights) {
  for (size_t i = 0; i < e; ++i) {
    w.scores[i] = sigmoid(logits[i]);
    w.choice[i] = p.correction_bias ? w.scores[i] + p.correction_bias[i] : w.scores[i];
  }
  const size_t group_size = e / p.num_groups;
  w.groups.clear();
  for (size_t g = 0; g < p.num_groups; ++g) {
    const float* c = w.choice.data() + g * group_size;
    float best = c[0];
    float second = -std::numeric_limits<float>::infinity();
    for (size_t i = 1; i < group_size; ++i) {
      if (c[i] > best) {
        second = best;
        best = c[i];
      } else if (c[i] > second) {
        second = c[i];
      }
    }
    w.groups.offer(group_size >= 2 ? best + second : best, g);
  }
  std::fill(w.kept.begin(), w.kept.end(), 0);
  for (size_t s = 0; s < w.groups.size(); ++s) w.kept[w.groups.id(s)] = 1;

  top.clear();
  for (size_t g = 0; g < p.num_groups; ++g) {
    if (!w.kept[g]) continue;
    for (size_t i = g * group_size; i < (g + 1) * group_size; ++i) top.offer(w.choice[i], i);
  }
  double sum = 0.0;
  for (size_t s = 0; s < k; ++s) sum += w.scores[top.id(s)];
  // Sigmoids can underflow to 0 for very negative logits: then leave the zeros unscaled.
  const double scale = (p.renormalize && sum > 0.0 ? 1.0 / sum : 1.0) * p.routed_scaling_factor;
  for (size_t s = 0; s < k; ++s) {
    ids[s] = static_cast<int32_t>(top.id(s));
    weights[s] = static_cast<float>(w.scores[top.id(s)] * scale);
  }
}

}  // namespace

void select_experts(const RoutingParams& params, const float* logits, size_t tokens,
                    size_t num_experts, size_t top_k, int32_t* ids, float* weights) {
  validate(params, logits, tokens, num_experts, top_k);
  const size_t e = num_experts, k = top_k;
  TopK top(k);
  switch (params.mode) {
    case RoutingMode::topk_softmax:
      for (size_t t = 0; t < tokens; ++t) {
        topk_softmax(logits + t * e, e, k, top, ids + t * k, weights + t * k);
      }
      break;
    case RoutingMode::softmax_topk: {
      std::vector<float> probs(e);
      for (size_t t = 0; t < tokens; ++t) {
        softmax_topk(logits + t * e, e, k, params.renormalize, top, probs.data(), ids + t * k,
                     weights + t * k);
      }
      break;
    }
    case RoutingMode::sigmoid_grouped: {
      GroupedScratch scratch(e, params.num_groups, params.topk_groups);
      for (size_t t = 0; t < tokens; ++t) {
        sigmoid_grouped(params, logits + t * e, e, k, scratch, top, ids + t * k,
                        weights + t * k);
      }
      break;
    }
  }
}

}  // namespace moe
