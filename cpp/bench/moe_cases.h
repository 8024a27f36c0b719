// The fused MoE forward on the presets, judged against the machine's limits:
//   bytes  = distinct experts a call selected x 3·I·H x bytes per weight as packed (f32 4,
//            bf16/f16 2, int8 8.5/8 and mxfp4 4.25/8: codes and scales), read once per call
//   flops  = 2·T·K·3·I·H
//   GB/s      = median over the timed calls of each call's bytes / that call's time
//   % read BW = GB/s / read bandwidth at the same thread count               (decode's bound)
//   % peak    = (flops / median time) / peak at the same thread count        (prefill's bound);
//               the peak of the kernel the calls ran (most of them): bf16 dot for a kernel
//               taking bf16 rows where the CPU has one, else f32 FMA
// The larger of the two is the fraction of the roofline reached; "bound" names it.
//
// Cold weights (the default; the method the project quotes for decode): before every call,
// warm-ups included, new random logits are routed with the preset's routing (a different set
// of experts each call) and the caches are swept (cache_sweep.h), neither timed. --warm: the
// same routes every call and no sweep (the weights a call reads may sit in the L3 from the
// last one).
//
// With a ggml bench_moe binary (peer_ggml.h), each gpt-oss-20b format x thread count is
// followed at once by bench_moe for the same token counts, so both see the same machine state;
// its medians sit beside ours ("ggml / ours" = its time / ours: > 1 means moe-cpu is faster).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "cache_sweep.h"
#include "limits.h"
#include "moe_cpu.h"
#include "presets.h"
#include "report.h"

namespace bench {

struct MoeCases {
  std::vector<const Preset*> presets;
  std::vector<moe::WeightFormat> dtypes;  // weight formats
  std::vector<size_t> tokens;
  std::vector<unsigned> threads;  // each has an entry in the limits
  int iters = 0;                  // 0: as many as fit the time budget
  bool warm = false;              // same routes, no sweep
  CacheSweep* sweep = nullptr;    // cold: run before every call
  std::string ggml;               // bench_moe binary; "" = not run (ggml_absent says why)
  std::string ggml_absent;
};

void run_moe_cases(const MoeCases& cases, const std::vector<Limits>& limits, Report& report);

}  // namespace bench
