// ggml's CPU backend side by side, in the same run: moe_bench runs a built copy of the peer
// driver bench_moe (its source and build steps live outside this repository, beside it; it
// times the MoE graph llama.cpp builds for one gpt-oss-20b layer) as a child process for the
// same weight format, thread count and token counts as the case just timed, and reads the
// medians it prints (CSV on stdout).
//
//   moe-cpu format   bench_moe TYPE   repack (CPU_REPACK buffer)
//   f32              f32              0
//   bf16             bf16             0
//   f16              f16              0
//   mxfp4            mxfp4            1   (llama.cpp's default on x86)
//   int8             q8_0             0
//
// bench_moe draws new random routes (K distinct experts of E, uniform) before every timed call
// and, given flush_mb > 0, reads flush_mb MiB through the caches (not timed); with
// BENCH_PAR_FLUSH=1, which this runner sets, every thread of its OpenMP team does. Warm-up
// >= 2 calls and >= 1 s per token count; then min_runs..max_runs calls (it stops once it has
// min_runs and > 3 s); the median.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "moe_cpu.h"

namespace bench {

// bench_moe's shape: gpt-oss-20b only (H = I = 2880, E = 32, K = 4, swigluoai, biases).
constexpr const char* kGgmlPreset = "gpt-oss-20b";

struct GgmlType {
  const char* type;
  int repack;
};
GgmlType ggml_type_for(moe::WeightFormat format);

struct GgmlRow {
  size_t tokens = 0;
  double median_ms = 0, min_ms = 0;
  int runs = 0;
  double experts_touched = 0;  // mean over its timed calls
  int repack = 0;              // as bench_moe reports it: 1 if the CPU_REPACK buffer was used
  unsigned threads = 0;
};

struct GgmlRun {
  bool ok = false;
  std::string command;      // as run (for the record)
  std::string error;        // when !ok
  std::string buffer_type;  // "weights in buffer type: ..." from its stderr, if it said
  std::vector<GgmlRow> rows;
  const GgmlRow* row(size_t tokens) const;
};

// Runs `binary` once for all `tokens`. min_runs/max_runs are passed through (max <= 64).
GgmlRun run_ggml(const std::string& binary, moe::WeightFormat format, unsigned threads,
                 const std::vector<size_t>& tokens, size_t flush_mib, int min_runs, int max_runs);

// "" if `path` is an executable file, else why not.
std::string ggml_binary_problem(const std::string& path);

}  // namespace bench
