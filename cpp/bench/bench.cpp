// Native benchmark of the fused MoE forward on the SPEC.md presets.
//
//   moe_bench [--preset gpt-oss-20b] [--dtype bf16|f32] [--tokens 1,64] [--threads N] [--iters N]
//
// Prints, per case, the median time of `iters` forwards and the bandwidth of the expert
// weights touched (every selected expert's W13 and W2 are read once per call).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "moe_cpu.h"

namespace {

struct Preset {
  const char* name;
  size_t H, I, E, K;
  moe::Activation activation;
  bool interleaved, biases;
};

const Preset kPresets[] = {
    {"gpt-oss-20b", 2880, 2880, 32, 4, moe::Activation::swigluoai, true, true},
    {"gpt-oss-120b", 2880, 2880, 128, 4, moe::Activation::swigluoai, true, true},
    {"mixtral-8x7b", 4096, 14336, 8, 2, moe::Activation::silu, false, false},
    {"qwen3-30b-a3b", 2048, 768, 128, 8, moe::Activation::silu, false, false},
    {"deepseek-v3", 7168, 2048, 256, 8, moe::Activation::silu, false, false},
};

std::vector<size_t> parse_list(const std::string& s) {
  std::vector<size_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoul(item));
  return out;
}

// Small random weights, so activations stay in a realistic range.
template <typename T>
std::vector<T> random_weights(size_t n, std::mt19937& rng, bool bf16) {
  std::uniform_real_distribution<float> dist(-0.03f, 0.03f);
  std::vector<T> w(n);
  for (auto& v : w) {
    float f = dist(rng);
    if constexpr (sizeof(T) == 2) v = moe::f32_to_bf16(f); else v = f;
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset_name = "gpt-oss-20b", dtype = "bf16";
  std::vector<size_t> token_counts = {1, 64};
  unsigned threads = 0;
  int iters = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--preset") preset_name = value;
    else if (flag == "--dtype") dtype = value;
    else if (flag == "--tokens") token_counts = parse_list(value);
    else if (flag == "--threads") threads = static_cast<unsigned>(std::stoul(value));
    else if (flag == "--iters") iters = std::max(1, std::atoi(value.c_str()));
    else { std::fprintf(stderr, "unknown flag %s\n", flag.c_str()); return 2; }
  }
  const Preset* preset = nullptr;
  for (const auto& p : kPresets) if (preset_name == p.name) preset = &p;
  if (!preset || (dtype != "bf16" && dtype != "f32")) {
    std::fprintf(stderr, "unknown preset or dtype\n");
    return 2;
  }
  const size_t E = preset->E, H = preset->H, I = preset->I, K = preset->K;
  const bool bf16 = dtype == "bf16";
  std::mt19937 rng(42);

  moe::MoeConfig config;
  config.num_experts = E; config.hidden_size = H; config.intermediate_size = I; config.top_k = K;
  config.activation.kind = preset->activation;
  config.w13_layout = preset->interleaved ? moe::W13Layout::interleaved : moe::W13Layout::halves;
  config.weight_dtype = bf16 ? moe::DType::bf16 : moe::DType::f32;
  config.threads = threads;

  std::unique_ptr<moe::MoeLayer> layer;
  auto t0 = std::chrono::steady_clock::now();
  {
    moe::MoeWeights w;
    std::vector<uint16_t> w13h, w2h, b13h, b2h;
    std::vector<float> w13f, w2f, b13f, b2f;
    if (bf16) {
      w13h = random_weights<uint16_t>(E * 2 * I * H, rng, true); w2h = random_weights<uint16_t>(E * H * I, rng, true);
      b13h = random_weights<uint16_t>(E * 2 * I, rng, true); b2h = random_weights<uint16_t>(E * H, rng, true);
      w = {w13h.data(), w2h.data(), preset->biases ? b13h.data() : nullptr, preset->biases ? b2h.data() : nullptr};
    } else {
      w13f = random_weights<float>(E * 2 * I * H, rng, false); w2f = random_weights<float>(E * H * I, rng, false);
      b13f = random_weights<float>(E * 2 * I, rng, false); b2f = random_weights<float>(E * H, rng, false);
      w = {w13f.data(), w2f.data(), preset->biases ? b13f.data() : nullptr, preset->biases ? b2f.data() : nullptr};
    }
    auto tp = std::chrono::steady_clock::now();
    layer = std::make_unique<moe::MoeLayer>(config, w);
    std::printf("preset %s  dtype %s  kernel %s  threads %u  (weights made in %.1f s, packed in %.2f s, layer %.2f GB)\n",
                preset->name, dtype.c_str(), moe::cpu_info().kernel.c_str(),
                threads ? threads : moe::physical_core_count(),
                std::chrono::duration<double>(tp - t0).count(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count(),
                layer->bytes() / 1e9);
  }
  std::printf("%8s %12s %14s %12s\n", "tokens", "median ms", "weights GB/s", "GFLOP/s");
  const size_t weight_bytes = bf16 ? 2 : 4;
  for (size_t T : token_counts) {
    std::vector<float> hidden(T * H);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto& v : hidden) v = normal(rng);
    std::vector<float> logits(T * E);
    for (auto& v : logits) v = normal(rng);
    std::vector<int32_t> ids(T * K);
    std::vector<float> weights(T * K), out(T * H);
    moe::RoutingParams routing;
    moe::select_experts(routing, logits.data(), T, E, K, ids.data(), weights.data());
    std::set<int32_t> touched(ids.begin(), ids.end());
    std::vector<double> ms;
    for (int it = 0; it < iters; ++it) {
      auto a = std::chrono::steady_clock::now();
      layer->forward(moe::DType::f32, hidden.data(), T, ids.data(), weights.data(), out.data());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    const double bytes = static_cast<double>(touched.size()) * 3 * I * H * weight_bytes;
    const double flops = 2.0 * T * K * 3 * I * H;
    std::printf("%8zu %12.2f %14.2f %12.2f\n", T, median, bytes / median / 1e6, flops / median / 1e6);
  }
  return 0;
}
