#include "presets.h"

#include <string>

namespace bench {

namespace {

moe::RoutingParams topk_softmax() { return {}; }

moe::RoutingParams softmax_topk_renormalized() {
  moe::RoutingParams r;
  r.mode = moe::RoutingMode::softmax_topk;
  r.renormalize = true;
  return r;
}

moe::RoutingParams deepseek_grouped() {
  moe::RoutingParams r;
  r.mode = moe::RoutingMode::sigmoid_grouped;
  r.renormalize = true;
  r.num_groups = 8;
  r.topk_groups = 4;
  r.routed_scaling_factor = 2.5f;
  return r;
}

}  // namespace

moe::MoeConfig Preset::config(moe::WeightFormat format, unsigned threads) const {
  moe::MoeConfig c;
  c.num_experts = E;
  c.hidden_size = H;
  c.intermediate_size = I;
  c.top_k = K;
  c.activation.kind = activation;
  c.w13_layout = interleaved ? moe::W13Layout::interleaved : moe::W13Layout::halves;
  c.weight_format = format;
  c.threads = threads;
  return c;
}

const std::vector<Preset>& presets() {
  using A = moe::Activation;
  static const std::vector<Preset> list = {
      {"gpt-oss-20b", 2880, 2880, 32, 4, A::swigluoai, true, true, topk_softmax(), false},
      {"gpt-oss-120b", 2880, 2880, 128, 4, A::swigluoai, true, true, topk_softmax(), false},
      {"mixtral-8x7b", 4096, 14336, 8, 2, A::silu, false, false, softmax_topk_renormalized(), false},
      {"qwen3-30b-a3b", 2048, 768, 128, 8, A::silu, false, false, softmax_topk_renormalized(), false},
      // 256 experts x 3 x 7168 x 2048: 22.5 GB in bf16.
      {"deepseek-v3", 7168, 2048, 256, 8, A::silu, false, false, deepseek_grouped(), true},
  };
  return list;
}

const Preset* find_preset(const char* name) {
  for (const auto& p : presets()) {
    if (std::string(name) == p.name) return &p;
  }
  return nullptr;
}

}  // namespace bench
