// Native benchmark (build/moe_bench): the machine's limits, then the fused MoE forward on the
// docs/spec.md presets judged against them (cold weights unless --warm; ggml's bench_moe beside it
// with --peer-ggml), then the W13 de-interleave and layer packing.
// Every case is timed the same way (timing.h); results can be written as JSON (--json FILE).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cache_sweep.h"
#include "layout_cases.h"
#include "limits.h"
#include "moe_cases.h"
#include "peer_ggml.h"
#include "presets.h"
#include "proc.h"
#include "report.h"
#include "ukernel_cases.h"

namespace {

const char* kUsage = R"(moe_bench [--preset NAME,...|all] [--dtype f32,bf16,f16,mxfp4,int8] [--tokens 1,4,16,64,256,512]
          [--threads 1,all] [--iters N] [--cases limits,moe,ukernels,deinterleave,packing] [--json FILE]
          [--warm] [--sweep-mb N] [--peer-ggml PATH]
  --preset     default gpt-oss-20b; 'all' is every preset but deepseek-v3 (22.5 GB in bf16: name
               it to run it). A case whose packed layer does not fit in memory is skipped.
  --threads    thread counts; 'all' = the physical cores available (the limits are measured
               for each count)
  --iters      timed calls per case (odd); default: as many as fit the time budget (cold: ~3 s,
               5 to 21 calls after >= 1 s of warm-up; warm: ~1.5 s, 3 to 21)
  --cases      which parts to run (the limits always run with 'moe')
  MoE cases run with cold weights: before every call, fresh routes (new random logits through
  the preset's routing) and a cache sweep of --sweep-mb MiB per core (default max(64, 4 x L3)),
  not timed.
  --warm       the old way instead: the same routes every call and no sweep
  --peer-ggml  a built bench_moe (ggml's MoE graph for gpt-oss-20b; also env MOE_BENCH_GGML):
               run after each gpt-oss-20b format x thread count for the same token counts,
               its medians printed beside ours (mxfp4 -> mxfp4 repack=1, int8 -> q8_0)
)";

struct Options {
  std::vector<const bench::Preset*> presets;
  std::vector<moe::WeightFormat> dtypes = {moe::WeightFormat::f32, moe::WeightFormat::bf16};
  std::vector<size_t> tokens = {1, 4, 16, 64, 256, 512};
  std::vector<unsigned> threads;
  int iters = 0;
  std::set<std::string> cases = {"limits", "moe", "deinterleave", "packing"};
  std::string json;
  bool warm = false;
  size_t sweep_mib = 0;  // 0: max(64, 4 x L3)
  std::string ggml;      // bench_moe path; "" = not given
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

size_t positive(const std::string& flag, const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v == 0) throw std::invalid_argument(flag + ": expected a positive integer, got '" + s + "'");
  return static_cast<size_t>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  std::string preset = "gpt-oss-20b";
  std::string threads = "1,all";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", kUsage);
      std::exit(0);
    }
    if (flag == "--warm") {
      o.warm = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + ": missing value");
    const std::string value = argv[++i];
    if (flag == "--preset") {
      preset = value;
    } else if (flag == "--dtype") {
      o.dtypes.clear();
      for (const auto& d : split(value)) {
        bool known = false;
        for (auto f : {moe::WeightFormat::f32, moe::WeightFormat::bf16, moe::WeightFormat::f16, moe::WeightFormat::mxfp4,
                       moe::WeightFormat::int8}) {
          if (d == moe::weight_format_name(f)) o.dtypes.push_back(f), known = true;
        }
        if (!known) throw std::invalid_argument("--dtype: expected f32, bf16, f16, mxfp4 or int8, got '" + d + "'");
      }
    } else if (flag == "--tokens") {
      o.tokens.clear();
      for (const auto& t : split(value)) o.tokens.push_back(positive(flag, t));
    } else if (flag == "--threads") {
      threads = value;
    } else if (flag == "--iters") {
      o.iters = static_cast<int>(positive(flag, value));
    } else if (flag == "--cases") {
      o.cases.clear();
      for (const auto& c : split(value)) {
        if (c != "limits" && c != "moe" && c != "ukernels" && c != "deinterleave" && c != "packing")
          throw std::invalid_argument("--cases: unknown case '" + c + "'");
        o.cases.insert(c);
      }
    } else if (flag == "--json") {
      o.json = value;
    } else if (flag == "--sweep-mb") {
      o.sweep_mib = positive(flag, value);
    } else if (flag == "--peer-ggml") {
      o.ggml = value;
    } else {
      throw std::invalid_argument("unknown flag " + flag);
    }
  }
  for (const auto& name : split(preset)) {
    if (name == "all") {
      for (const auto& p : bench::presets()) {
        if (!p.explicit_only) o.presets.push_back(&p);
      }
    } else if (const bench::Preset* p = bench::find_preset(name.c_str())) {
      o.presets.push_back(p);
    } else {
      throw std::invalid_argument("--preset: unknown preset '" + name + "'");
    }
  }
  for (const auto& t : split(threads)) {
    const unsigned n = t == "all" ? moe::physical_core_count() : static_cast<unsigned>(positive("--threads", t));
    bool seen = false;
    for (unsigned m : o.threads) seen = seen || m == n;
    if (!seen) o.threads.push_back(n);
  }
  if (o.cases.count("moe")) o.cases.insert("limits");
  if (o.ggml.empty()) {
    const char* env = std::getenv("MOE_BENCH_GGML");
    if (env && *env) o.ggml = env;
  }
  return o;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
    moe::cpu_info();  // an unusable MOE_CPU_ISA is reported here, before any work
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe_bench: %s\n%s", e.what(), kUsage);
    return 2;
  }
  bench::Report report;
  const auto& cpu = moe::cpu_info();
  const std::string load_start = bench::load_average();
  std::printf("moe_bench: %s [%s], kernel %s, %u physical cores, load average %s\n", cpu.arch.c_str(),
              join(cpu.features).c_str(), cpu.kernel.c_str(), moe::physical_core_count(), load_start.c_str());
  report.machine()
      .text("arch", cpu.arch)
      .text("features", join(cpu.features))
      .text("kernel", cpu.kernel)
      .count("physical_cores", moe::physical_core_count())
      .text("load_average_start", load_start);

  try {
    std::vector<bench::Limits> limits;
    if (o.cases.count("limits")) {
      std::printf("\nmachine limits (fastest of 11 passes each)\n");
      limits = bench::measure_limits(o.threads);
      bench::Table table({"threads", "read GB/s", "f32 FMA GFLOP/s", "bf16 dot GFLOP/s", "AMX bf16 GFLOP/s"}, 8);
      table.print_header();
      for (const auto& l : limits) {
        table.print_row({std::to_string(l.threads), bench::fixed(l.read_gbps, 1) + " (" + l.read_isa + ")",
                         bench::fixed(l.fma_gflops, 1) + " (" + l.fma_isa + ")",
                         l.bf16_dot_gflops > 0 ? bench::fixed(l.bf16_dot_gflops, 1) : "n/a",
                         l.amx_bf16_gflops > 0 ? bench::fixed(l.amx_bf16_gflops, 1) : "n/a"});
        report.add("limits", bench::Record()
                                 .count("threads", l.threads)
                                 .num("read_gbps", l.read_gbps)
                                 .text("read_isa", l.read_isa)
                                 .num("fma_gflops", l.fma_gflops)
                                 .text("fma_isa", l.fma_isa)
                                 .num("bf16_dot_gflops", l.bf16_dot_gflops)
                                 .num("amx_bf16_gflops", l.amx_bf16_gflops));
      }
    }
    if (o.cases.count("ukernels")) bench::run_ukernel_cases(report, o.iters);
    if (o.cases.count("moe")) {
      bench::MoeCases cases;
      cases.presets = o.presets;
      cases.dtypes = o.dtypes;
      cases.tokens = o.tokens;
      cases.threads = o.threads;
      cases.iters = o.iters;
      cases.warm = o.warm;
      const bench::L3Info l3 = bench::l3_info();
      const size_t sweep_bytes = o.sweep_mib ? o.sweep_mib << 20 : bench::default_sweep_bytes(l3.bytes());
      std::unique_ptr<bench::CacheSweep> sweep;
      if (!o.warm) {
        sweep = std::make_unique<bench::CacheSweep>(sweep_bytes, moe::physical_core_count());
        cases.sweep = sweep.get();
      }
      if (o.ggml.empty()) {
        cases.ggml_absent = "no --peer-ggml";
      } else if (const std::string problem = bench::ggml_binary_problem(o.ggml); !problem.empty()) {
        cases.ggml_absent = problem;
      } else {
        cases.ggml = o.ggml;
      }
      report.machine()
          .text("method", o.warm ? "warm" : "cold")
          .text("l3", l3.describe())
          .count("l3_bytes", static_cast<long long>(l3.bytes()))
          .count("sweep_mib", o.warm ? 0 : static_cast<long long>(sweep_bytes >> 20))
          .count("sweep_threads", o.warm ? 0 : static_cast<long long>(moe::physical_core_count()))
          .text("weight_gbps", "median over the timed calls of each call's bytes (its distinct experts x 3*I*H x "
                               "packed bytes per weight) / its time")
          .text("ggml_binary", cases.ggml)
          .text("ggml", cases.ggml.empty() ? "not run (" + cases.ggml_absent + ")" : "run");
      std::printf("\nL3 %s; %s\n", l3.describe().c_str(),
                  o.warm ? "warm weights (--warm): no sweep"
                         : ("cache sweep " + std::to_string(sweep_bytes >> 20) + " MiB per core").c_str());
      bench::run_moe_cases(cases, limits, report);
    }
    if (o.cases.count("deinterleave")) bench::run_deinterleave_case(o.iters, report);
    if (o.cases.count("packing")) bench::run_packing_case(report);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe_bench: %s\n", e.what());
    return 1;
  }

  const std::string load_end = bench::load_average();
  report.machine().text("load_average_end", load_end);
  std::printf("\nload average at the end: %s\n", load_end.c_str());
  if (!o.json.empty()) {
    if (!report.write_json(o.json)) {
      std::fprintf(stderr, "moe_bench: cannot write %s\n", o.json.c_str());
      return 1;
    }
    std::printf("results written to %s\n", o.json.c_str());
  }
  return 0;
}
