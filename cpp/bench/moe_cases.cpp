#include "moe_cases.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "proc.h"
#include "timing.h"
#include "weights.h"

namespace bench {

namespace {

// Time spent on the timed calls of one case, when --iters does not say.
constexpr double kCaseBudgetSeconds = 1.5;

const char* dtype_name(moe::WeightFormat f) { return moe::weight_format_name(f); }
// Bytes per weight as packed (quantized formats: codes and scales).
double dtype_bytes(moe::WeightFormat f) {
  switch (f) {
    case moe::WeightFormat::f32: return 4;
    case moe::WeightFormat::mxfp4: return 4.25 / 8;
    case moe::WeightFormat::int8: return 8.5 / 8;
    default: return 2;
  }
}
// The caller's arrays a layer of `f` is built from: f32 for f32, else bf16 (rounded or
// quantized while packing).
moe::DType source_dtype(moe::WeightFormat f) { return f == moe::WeightFormat::f32 ? moe::DType::f32 : moe::DType::bf16; }

const Limits& limits_for(const std::vector<Limits>& limits, unsigned threads) {
  for (const auto& l : limits) {
    if (l.threads == threads) return l;
  }
  return limits.back();
}

// The caller's weights: W13 and W2 views of repeating random data, real biases.
struct CallerWeights {
  std::unique_ptr<RepeatingWeights> w13, w2;
  std::vector<char> b13, b2;
  moe::WeightFormat f = moe::WeightFormat::f32;
  moe::MoeWeights view() const {
    return {{f, w13->data(), nullptr}, {f, w2->data(), nullptr}, {f, b13.empty() ? nullptr : b13.data(), nullptr},
            {f, b2.empty() ? nullptr : b2.data(), nullptr}};
  }
};

CallerWeights make_weights(const Preset& p, moe::WeightFormat format) {
  const moe::DType dtype = source_dtype(format);
  const size_t dtype_bytes = dtype == moe::DType::bf16 ? 2 : 4;
  CallerWeights w;
  w.f = dtype == moe::DType::bf16 ? moe::WeightFormat::bf16 : moe::WeightFormat::f32;
  w.w13 = std::make_unique<RepeatingWeights>(p.E * 2 * p.I * p.H, dtype, 1);
  w.w2 = std::make_unique<RepeatingWeights>(p.E * p.H * p.I, dtype, 2);
  if (p.biases) {
    w.b13.resize(p.E * 2 * p.I * dtype_bytes);
    w.b2.resize(p.E * p.H * dtype_bytes);
    fill_random(w.b13.data(), p.E * 2 * p.I, dtype, 3);
    fill_random(w.b2.data(), p.E * p.H, dtype, 4);
  }
  return w;
}

void run_tokens(const Preset& p, moe::WeightFormat dtype, unsigned threads, const moe::MoeLayer& layer,
                const Limits& lim, const MoeCases& cases, Report& report) {
  const bool use_bf16_peak = dtype != moe::WeightFormat::f32 && layer.kernels().prefill.find("bf16__") != std::string::npos && lim.bf16_dot_gflops > 0;
  const double peak = use_bf16_peak ? lim.bf16_dot_gflops : lim.fma_gflops;
  std::printf("  limits at %u thread%s: read %.1f GB/s, peak %.1f GFLOP/s (%s)\n", threads,
              threads == 1 ? "" : "s", lim.read_gbps, peak, use_bf16_peak ? "bf16 dot" : "f32 FMA");
  Table table({"tokens", "iters", "median ms", "experts", "GB/s", "GFLOP/s", "% read BW", "% peak", "bound"}, 7);
  table.print_header();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t T : cases.tokens) {
    std::vector<float> hidden(T * p.H), logits(T * p.E), out(T * p.H), route_weights(T * p.K);
    for (auto& v : hidden) v = normal(rng);
    for (auto& v : logits) v = normal(rng);  // continuous: no ties
    std::vector<int32_t> ids(T * p.K);
    moe::select_experts(p.routing, logits.data(), T, p.E, p.K, ids.data(), route_weights.data());
    const size_t experts = std::set<int32_t>(ids.begin(), ids.end()).size();

    const Timing t = time_median(
        [&] { layer.forward(moe::DType::f32, hidden.data(), T, ids.data(), route_weights.data(), out.data()); },
        cases.iters, kCaseBudgetSeconds);
    const double bytes = static_cast<double>(experts) * 3 * p.I * p.H * dtype_bytes(dtype);
    const double flops = 2.0 * T * p.K * 3 * p.I * p.H;
    const double gbps = bytes / t.median_ms / 1e6, gflops = flops / t.median_ms / 1e6;
    const double bw_fraction = gbps / lim.read_gbps, peak_fraction = gflops / peak;
    const bool memory_bound = bw_fraction >= peak_fraction;
    table.print_row({std::to_string(T), std::to_string(t.iters), fixed(t.median_ms, 2), std::to_string(experts),
                     fixed(gbps, 2), fixed(gflops, 1), fixed(100 * bw_fraction, 1), fixed(100 * peak_fraction, 1),
                     memory_bound ? "memory" : "compute"});
    report.add("moe", Record()
                          .text("preset", p.name)
                          .text("weight_dtype", dtype_name(dtype))
                          .text("activation_dtype", "f32")
                          .count("threads", threads)
                          .count("tokens", static_cast<long long>(T))
                          .count("iters", t.iters)
                          .num("median_ms", t.median_ms)
                          .count("experts_touched", static_cast<long long>(experts))
                          .count("weight_bytes", static_cast<long long>(bytes))
                          .count("flops", static_cast<long long>(flops))
                          .num("weight_gbps", gbps)
                          .num("gflops", gflops)
                          .num("read_bw_fraction", bw_fraction)
                          .num("peak_fraction", peak_fraction)
                          .text("peak", use_bf16_peak ? "bf16_dot" : "fma")
                          .text("bound", memory_bound ? "memory" : "compute")
                          .num("roofline_fraction", std::max(bw_fraction, peak_fraction)));
  }
}

}  // namespace

void run_moe_cases(const MoeCases& cases, const std::vector<Limits>& limits, Report& report) {
  for (const Preset* p : cases.presets) {
    for (moe::WeightFormat dtype : cases.dtypes) {
      const size_t packed = static_cast<size_t>(p->weights() * dtype_bytes(dtype)) + (p->biases ? p->E * (2 * p->I + p->H) * 4 : 0);
      const size_t available = available_memory_bytes(), margin = memory_margin_bytes();
      if (available && packed + margin > available) {
        const std::string why = "needs " + fixed(packed / 1e9, 1) + " GB for the packed layer + " +
                                fixed(margin / 1e9, 1) + " GB margin, " + fixed(available / 1e9, 1) + " GB available";
        std::printf("\n%s %s weights: skipped (%s)\n", p->name, dtype_name(dtype), why.c_str());
        report.add("skipped", Record().text("preset", p->name).text("weight_dtype", dtype_name(dtype)).text("reason", why));
        continue;
      }
      for (unsigned threads : cases.threads) {
        std::unique_ptr<moe::MoeLayer> layer;
        double pack_seconds;
        {
          const CallerWeights w = make_weights(*p, dtype);
          const double t0 = now_seconds();
          layer = std::make_unique<moe::MoeLayer>(p->config(dtype, threads), w.view());
          pack_seconds = now_seconds() - t0;
        }
        std::printf("\n%s (E=%zu H=%zu I=%zu K=%zu), %s weights, f32 activations, %u thread%s, kernels %s / %s "
                    "(packed %.2f GB in %.2f s)\n",
                    p->name, p->E, p->H, p->I, p->K, dtype_name(dtype), threads, threads == 1 ? "" : "s",
                    layer->kernels().decode.c_str(), layer->kernels().prefill.c_str(), layer->bytes() / 1e9, pack_seconds);
        run_tokens(*p, dtype, threads, *layer, limits_for(limits, threads), cases, report);
      }
    }
  }
}

}  // namespace bench
