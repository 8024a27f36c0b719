// The fused MoE forward on the presets, judged against the machine's limits:
//   bytes  = distinct selected experts x 3·I·H x bytes per weight (read once per call)
//   flops  = 2·T·K·3·I·H
//   % read BW = (bytes / time) / read bandwidth at the same thread count   (decode's bound)
//   % peak    = (flops / time) / peak (bf16 dot peak for bf16 weights where the CPU has one,
//               else f32 FMA peak) at the same thread count                (prefill's bound)
// The larger of the two is the fraction of the roofline reached; "bound" names it.
#pragma once

#include <cstddef>
#include <vector>

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
};

void run_moe_cases(const MoeCases& cases, const std::vector<Limits>& limits, Report& report);

}  // namespace bench
