// The micro-kernel case: each runnable kernel of the registry (ukernel/registry.cpp) against a
// 2880 x 2880 matrix packed in its format, one thread, weights warm in cache only as far as
// they fit (the matrix is 4-33 MB). T = 1 shows the decode inner loop (weights streamed once),
// T = 32 the prefill one (each panel reused by 32 tokens). A kernel of another set than the
// active one is listed only where the CPU can run it.
#include "ukernel_cases.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "aligned_buffer.h"
#include "format/pack.h"
#include "format/panel.h"
#include "timing.h"
#include "ukernel/ukernel.h"

namespace bench {

namespace {

constexpr size_t kRows = 2880, kDepth = 2880;  // one gpt-oss-20b gate or up matrix
constexpr size_t kTokenCounts[] = {1, 32};
constexpr double kBudgetSeconds = 0.5;

}  // namespace

void run_ukernel_cases(Report& report, int iters) {
  std::printf("\nmicro-kernels of the registry, %zu x %zu matrix, 1 thread (warm)\n", kRows, kDepth);
  Table table({"kernel", "regime", "tokens", "median ms", "GB/s", "GFLOP/s"}, 8);
  table.print_header();
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(kRows * kDepth);
  for (float& v : values) v = normal(rng);
  for (const moe::ukernel::UKernel* k : moe::ukernel::registry()) {
    if (!moe::ukernel::runnable(*k)) continue;
    const moe::FormatInfo& format = moe::format_info(k->weights);
    moe::AlignedBuffer panels(moe::packed_matrix_bytes(format, kRows, kDepth));
    moe::pack_panels({{moe::WeightFormat::f32, values.data(), nullptr}, 1, 1, kRows, kDepth, moe::W13Layout::halves, false},
                     format, panels.as<uint8_t>(), 1);
    const size_t padded = moe::padded_depth(kDepth), panel_bytes = format.panel_bytes(padded);
    size_t most_tokens = 0;
    for (size_t T : kTokenCounts) most_tokens = std::max(most_tokens, T);
    moe::AlignedBuffer scratch(k->scratch_bytes(padded, most_tokens) + 64);
    for (size_t T : kTokenCounts) {
      std::vector<float> x_f32(T * kDepth);
      for (float& v : x_f32) v = normal(rng);
      std::vector<uint16_t> x_bf16(T * kDepth);
      moe::convert_f32_to_bf16(x_f32.data(), x_bf16.data(), x_bf16.size());
      std::vector<const void*> rows(T);
      for (size_t t = 0; t < T; ++t) {
        rows[t] = k->activations == moe::DType::bf16 ? static_cast<const void*>(x_bf16.data() + t * kDepth)
                                                       : static_cast<const void*>(x_f32.data() + t * kDepth);
      }
      std::vector<float> out(kRows * T);
      const Timing t = time_median(
          [&] { k->fn(panels.as<uint8_t>(), panel_bytes, padded, kRows, rows.data(), T, kDepth, out.data(), scratch.as<void>()); },
          iters, kBudgetSeconds);
      const double gbps = panels.bytes() / t.median_ms / 1e6, gflops = 2.0 * kRows * kDepth * T / t.median_ms / 1e6;
      static const char* const regimes[] = {"decode", "prefill", "any"};
      table.print_row({k->name, regimes[static_cast<int>(k->regime)], std::to_string(T), fixed(t.median_ms, 3),
                       fixed(gbps, 1), fixed(gflops, 1)});
      report.add("ukernel", Record()
                                .text("kernel", k->name)
                                .text("kernel_set", k->kernel_set)
                                .text("weights", format.name)
                                .count("tokens", static_cast<long long>(T))
                                .num("median_ms", t.median_ms)
                                .num("weight_gbps", gbps)
                                .num("gflops", gflops));
    }
  }
}

}  // namespace bench
