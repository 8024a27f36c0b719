#include "moe_cases.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "peer_ggml.h"
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

// Time per case when --iters does not say: cold calls get bench_moe's rule (>= 1 s of warm-up,
// >= 5 calls, ~3 s of timed calls), so the two sides are timed alike.
constexpr double kColdBudgetSeconds = 3.0;
constexpr double kColdWarmupSeconds = 1.0;
constexpr int kColdMinIters = 5;
constexpr int kGgmlMinRuns = 5, kGgmlMaxRuns = 21, kGgmlRunsCap = 64;

// One token count of one case: moe-cpu's numbers, and ggml's beside them when it ran.
struct CaseRow {
  size_t tokens = 0;
  int iters = 0;
  double median_ms = 0;
  double experts_mean = 0;
  size_t experts_min = 0, experts_max = 0;
  double bytes_mean = 0, flops = 0;
  double gbps = 0, gflops = 0;
  double bw_fraction = 0, peak_fraction = 0;
  bool memory_bound = true;
  std::string kernel, regime;  // the kernel most calls ran; "decode", "prefill" or "mixed"
  const char* peak_name = "fma";
  double peak = 0;
  bool ggml = false;
  GgmlRow g;
  double ggml_gbps = 0, ggml_gflops = 0, ggml_fraction = 0;  // fraction of the bound of `bound`
};

struct Summary {
  std::string preset, dtype;
  unsigned threads;
  CaseRow row;
};

std::string roof_text(double fraction, bool memory) {
  return fixed(100 * fraction, 0) + (memory ? "% BW" : "% peak");
}

std::vector<CaseRow> time_tokens(const Preset& p, moe::WeightFormat dtype, const moe::MoeLayer& layer,
                                 const Limits& lim, const MoeCases& cases) {
  std::vector<CaseRow> rows;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const double expert_bytes = 3.0 * p.I * p.H * dtype_bytes(dtype);
  const auto& kc = layer.kernels();
  for (size_t T : cases.tokens) {
    std::vector<float> hidden(T * p.H), logits(T * p.E), out(T * p.H), route_weights(T * p.K);
    for (auto& v : hidden) v = normal(rng);
    std::vector<int32_t> ids(T * p.K);
    std::vector<char> seen(p.E);
    size_t experts = 0;
    auto route = [&] {
      for (auto& v : logits) v = normal(rng);  // continuous: no ties
      moe::select_experts(p.routing, logits.data(), T, p.E, p.K, ids.data(), route_weights.data());
      std::fill(seen.begin(), seen.end(), 0);
      experts = 0;
      for (int32_t e : ids) experts += seen[e] ? 0 : (seen[e] = 1);
    };
    route();
    std::vector<size_t> call_experts;
    auto call = [&] { layer.forward(moe::DType::f32, hidden.data(), T, ids.data(), route_weights.data(), out.data()); };
    Timing t;
    if (cases.warm) {
      t = time_median(call, cases.iters, kCaseBudgetSeconds);
      call_experts.assign(t.ms.size(), experts);
    } else {
      t = time_median_cold(
          [&](bool timed) {
            route();
            cases.sweep->run();
            if (timed) call_experts.push_back(experts);
          },
          call, cases.iters, kColdBudgetSeconds, kColdWarmupSeconds, kColdMinIters);
    }

    CaseRow r;
    r.tokens = T;
    r.iters = t.iters;
    r.median_ms = t.median_ms;
    r.flops = 2.0 * T * p.K * 3 * p.I * p.H;
    std::vector<double> call_gbps;
    size_t prefill_calls = 0, tiles_calls = 0, sum = 0;
    r.experts_min = SIZE_MAX;
    for (size_t i = 0; i < t.ms.size(); ++i) {
      const size_t g = call_experts[i];
      sum += g;
      r.experts_min = std::min(r.experts_min, g);
      r.experts_max = std::max(r.experts_max, g);
      call_gbps.push_back(g * expert_bytes / t.ms[i] / 1e6);
      prefill_calls += T * p.K >= kc.prefill_min_tokens_per_expert * g;
      tiles_calls += !kc.tiles.empty() && T * p.K >= kc.tiles_min_tokens_per_expert * g;
    }
    r.experts_mean = static_cast<double>(sum) / t.ms.size();
    r.bytes_mean = r.experts_mean * expert_bytes;
    r.gbps = median(call_gbps);
    r.gflops = r.flops / t.median_ms / 1e6;
    const bool prefill = 2 * prefill_calls > t.ms.size();
    r.regime = prefill_calls == 0 ? "decode" : prefill_calls == t.ms.size() ? "prefill" : "mixed";
    r.kernel = 2 * tiles_calls > t.ms.size() ? kc.tiles : prefill ? kc.prefill : kc.decode;
    const bool amx_peak = r.kernel.find("__amx") != std::string::npos && lim.amx_bf16_gflops > 0;
    const bool bf16_peak = r.kernel.find("_bf16__") != std::string::npos && lim.bf16_dot_gflops > 0;
    r.peak_name = amx_peak ? "amx_bf16" : bf16_peak ? "bf16_dot" : "fma";
    r.peak = amx_peak ? lim.amx_bf16_gflops : bf16_peak ? lim.bf16_dot_gflops : lim.fma_gflops;
    r.bw_fraction = r.gbps / lim.read_gbps;
    r.peak_fraction = r.gflops / r.peak;
    r.memory_bound = r.bw_fraction >= r.peak_fraction;
    rows.push_back(r);
  }
  return rows;
}

void attach_ggml(std::vector<CaseRow>& rows, const GgmlRun& run, const Preset& p, moe::WeightFormat dtype,
                 const Limits& lim) {
  const double expert_bytes = 3.0 * p.I * p.H * dtype_bytes(dtype);
  for (auto& r : rows) {
    const GgmlRow* g = run.row(r.tokens);
    if (!g) continue;
    r.ggml = true;
    r.g = *g;
    r.ggml_gbps = g->experts_touched * expert_bytes / g->median_ms / 1e6;
    r.ggml_gflops = r.flops / g->median_ms / 1e6;
    r.ggml_fraction = r.memory_bound ? r.ggml_gbps / lim.read_gbps : r.ggml_gflops / r.peak;
  }
}

void print_rows(const std::vector<CaseRow>& rows, bool with_ggml) {
  std::vector<std::string> headers = {"tokens", "iters", "median ms", "experts", "GB/s", "GFLOP/s",
                                      "% read BW", "% peak", "peak", "bound"};
  if (with_ggml) {
    for (const char* h : {"ggml ms", "ggml / ours", "ggml %"}) headers.push_back(h);
  }
  Table table(headers, 7);
  table.print_header();
  for (const auto& r : rows) {
    std::vector<std::string> cells = {std::to_string(r.tokens), std::to_string(r.iters), fixed(r.median_ms, 2),
                                      fixed(r.experts_mean, 1), fixed(r.gbps, 2), fixed(r.gflops, 1),
                                      fixed(100 * r.bw_fraction, 1), fixed(100 * r.peak_fraction, 1),
                                      std::string(r.peak_name) == "fma" ? "FMA" : "bf16dot",
                                      r.memory_bound ? "memory" : "compute"};
    if (with_ggml) {
      cells.push_back(r.ggml ? fixed(r.g.median_ms, 2) : "-");
      cells.push_back(r.ggml ? fixed(r.g.median_ms / r.median_ms, 2) : "-");
      cells.push_back(r.ggml ? fixed(100 * r.ggml_fraction, 1) : "-");
    }
    table.print_row(cells);
  }
}

Record case_record(const Preset& p, moe::WeightFormat dtype, unsigned threads, const MoeCases& cases,
                   const CaseRow& r, const std::string& ggml_status) {
  Record rec;
  rec.text("preset", p.name)
      .text("weight_dtype", dtype_name(dtype))
      .text("activation_dtype", "f32")
      .count("threads", threads)
      .count("tokens", static_cast<long long>(r.tokens))
      .text("method", cases.warm ? "warm" : "cold")
      .text("routes", cases.warm ? "fixed" : "fresh per call")
      .count("sweep_mib", cases.warm ? 0 : static_cast<long long>(cases.sweep->bytes_per_thread() >> 20))
      .count("iters", r.iters)
      .num("median_ms", r.median_ms)
      .num("experts_touched", r.experts_mean)
      .count("experts_min", static_cast<long long>(r.experts_min))
      .count("experts_max", static_cast<long long>(r.experts_max))
      .num("weight_bits", dtype_bytes(dtype) * 8)
      .num("weight_bytes", r.bytes_mean)
      .num("flops", r.flops)
      .num("weight_gbps", r.gbps)
      .num("gflops", r.gflops)
      .num("read_bw_fraction", r.bw_fraction)
      .num("peak_fraction", r.peak_fraction)
      .text("kernel", r.kernel)
      .text("kernel_regime", r.regime)
      .text("peak", r.peak_name)
      .num("peak_gflops", r.peak)
      .text("bound", r.memory_bound ? "memory" : "compute")
      .num("roofline_fraction", std::max(r.bw_fraction, r.peak_fraction))
      .text("ggml_status", ggml_status);
  if (r.ggml) {
    const GgmlType gt = ggml_type_for(dtype);
    rec.text("ggml_type", gt.type)
        .count("ggml_repack", r.g.repack)
        .num("ggml_median_ms", r.g.median_ms)
        .num("ggml_min_ms", r.g.min_ms)
        .count("ggml_runs", r.g.runs)
        .num("ggml_experts_touched", r.g.experts_touched)
        .num("ggml_weight_gbps", r.ggml_gbps)
        .num("ggml_gflops", r.ggml_gflops)
        .num("ggml_roofline_fraction", r.ggml_fraction)
        .num("ggml_over_ours", r.g.median_ms / r.median_ms);
  }
  return rec;
}

}  // namespace

void run_moe_cases(const MoeCases& cases, const std::vector<Limits>& limits, Report& report) {
  if (cases.warm) {
    std::printf("\nwarm weights: the same routes every call, no cache sweep (--warm); median of the timed calls\n");
  } else {
    std::printf("\ncold weights: fresh routes + %zu MB cache sweep before each call (per core, %u cores; not timed); "
                "median of the timed calls\n",
                cases.sweep->bytes_per_thread() >> 20, cases.sweep->threads());
  }
  std::printf("GB/s = median over the calls of (experts that call selected x 3·I·H x bytes per weight as packed) / "
              "its time; %% peak = 2·T·K·3·I·H / median time / the peak of the kernel run\n");
  if (cases.ggml.empty()) {
    std::printf("ggml: not run (%s)\n", cases.ggml_absent.c_str());
  } else if (cases.warm) {
    std::printf("ggml: bench_moe draws new routes every call whatever the mode; --warm runs it without a sweep "
                "(flush_mb 0)\n");
  } else {
    std::printf("ggml: %s after each gpt-oss-20b format x thread count, same token counts, same sweep size "
                "(read only, on every thread: BENCH_PAR_FLUSH=1)\n",
                cases.ggml.c_str());
  }
  const int ggml_min = cases.iters > 0 ? std::min(cases.iters, kGgmlRunsCap) : kGgmlMinRuns;
  const int ggml_max = cases.iters > 0 ? std::min(cases.iters, kGgmlRunsCap) : kGgmlMaxRuns;
  const size_t ggml_flush_mib = cases.warm ? 0 : cases.sweep->bytes_per_thread() >> 20;

  std::vector<Summary> summary;
  bool any_ggml = false;
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
        const Limits& lim = limits_for(limits, threads);
        std::vector<CaseRow> rows;
        {
          std::unique_ptr<moe::MoeLayer> layer;
          double pack_seconds;
          {
            const CallerWeights w = make_weights(*p, dtype);
            const double t0 = now_seconds();
            layer = std::make_unique<moe::MoeLayer>(p->config(dtype, threads), w.view());
            pack_seconds = now_seconds() - t0;
          }
          std::printf("\n%s (E=%zu H=%zu I=%zu K=%zu), %s weights (%.3g bits), f32 activations, %u thread%s, kernels %s / %s "
                      "(prefill from %zu tokens per expert; packed %.2f GB in %.2f s)\n",
                      p->name, p->E, p->H, p->I, p->K, dtype_name(dtype), dtype_bytes(dtype) * 8, threads,
                      threads == 1 ? "" : "s", layer->kernels().decode.c_str(), layer->kernels().prefill.c_str(),
                      layer->kernels().prefill_min_tokens_per_expert, layer->bytes() / 1e9, pack_seconds);
          if (!layer->kernels().tiles.empty()) {
            std::printf("  tiles kernel %s from %zu tokens per expert\n", layer->kernels().tiles.c_str(),
                        layer->kernels().tiles_min_tokens_per_expert);
          }
          std::printf("  limits at %u thread%s: read %.1f GB/s, peak %.1f GFLOP/s f32 FMA%s\n", threads,
                      threads == 1 ? "" : "s", lim.read_gbps, lim.fma_gflops,
                      (lim.bf16_dot_gflops > 0 ? ", " + fixed(lim.bf16_dot_gflops, 1) + " bf16 dot" : std::string()).c_str());
          if (lim.amx_bf16_gflops > 0) std::printf("  AMX bf16 peak %.1f GFLOP/s\n", lim.amx_bf16_gflops);
          std::printf("  timing moe-cpu ...");
          std::fflush(stdout);
          const double t0 = now_seconds();
          rows = time_tokens(*p, dtype, *layer, lim, cases);
          std::printf(" %.0f s", now_seconds() - t0);
        }  // the layer is freed before ggml runs: the two never share the memory

        std::string ggml_status;
        if (cases.ggml.empty()) {
          ggml_status = "not run (" + cases.ggml_absent + ")";
        } else if (std::string(p->name) != kGgmlPreset) {
          ggml_status = std::string("not run (bench_moe times ") + kGgmlPreset + " only)";
        } else {
          std::printf("; ggml bench_moe ...");
          std::fflush(stdout);
          const double t0 = now_seconds();
          const GgmlRun run = run_ggml(cases.ggml, dtype, threads, cases.tokens, ggml_flush_mib, ggml_min, ggml_max);
          std::printf(" %.0f s", now_seconds() - t0);
          if (run.ok) {
            attach_ggml(rows, run, *p, dtype, lim);
            ggml_status = "run";
            any_ggml = true;
          } else {
            ggml_status = "failed (" + run.error + ")";
          }
          report.add("ggml", Record()
                                 .text("preset", p->name)
                                 .text("weight_dtype", dtype_name(dtype))
                                 .count("threads", threads)
                                 .text("command", run.command)
                                 .text("buffer_type", run.buffer_type)
                                 .text("status", ggml_status));
          std::printf("\n  ggml: %s: %s%s", ggml_status.c_str(), run.command.c_str(),
                      run.buffer_type.empty() ? "" : (" (weights in " + run.buffer_type + ")").c_str());
        }
        std::printf("\n");
        if (ggml_status.compare(0, 8, "not run ") == 0) std::printf("  ggml: %s\n", ggml_status.c_str());
        print_rows(rows, ggml_status == "run");
        for (const auto& r : rows) {
          report.add("moe", case_record(*p, dtype, threads, cases, r, ggml_status));
          summary.push_back({p->name, dtype_name(dtype), threads, r});
        }
      }
    }
  }

  if (summary.empty()) return;
  std::printf("\nsummary (%s weights; %% of the bound named: read bandwidth \"BW\" or the kernel's arithmetic peak; "
              "ggml / ours = ggml's median time / ours)\n",
              cases.warm ? "warm" : "cold");
  std::vector<std::string> headers = {"preset", "dtype", "threads", "tokens", "ours ms", "ours roofline"};
  if (any_ggml) {
    for (const char* h : {"ggml ms", "ggml roofline", "ggml / ours"}) headers.push_back(h);
  }
  Table table(headers, 7);
  table.print_header();
  for (const auto& s : summary) {
    const CaseRow& r = s.row;
    std::vector<std::string> cells = {s.preset, s.dtype, std::to_string(s.threads), std::to_string(r.tokens),
                                      fixed(r.median_ms, 2),
                                      roof_text(r.memory_bound ? r.bw_fraction : r.peak_fraction, r.memory_bound)};
    if (any_ggml) {
      cells.push_back(r.ggml ? fixed(r.g.median_ms, 2) : "-");
      cells.push_back(r.ggml ? roof_text(r.ggml_fraction, r.memory_bound) : "-");
      cells.push_back(r.ggml ? fixed(r.g.median_ms / r.median_ms, 2) : "-");
    }
    table.print_row(cells);
  }
}

}  // namespace bench
