// This machine's limits, measured in the same run as the cases they judge:
//   - streaming read bandwidth (a buffer far larger than the last-level cache, read with the
//     widest loads the CPU has and summed), the bound of decode (few tokens);
//   - peak f32 FMA throughput (independent FMA chains held in registers) and peak bf16 dot
//     throughput (vdpbf16ps, where the CPU has avx512bf16), the bounds of prefill.
#pragma once

#include <string>
#include <vector>

namespace bench {

struct Limits {
  unsigned threads = 1;
  double read_gbps = 0;
  std::string read_isa;
  double fma_gflops = 0;
  std::string fma_isa;
  double bf16_dot_gflops = 0;  // 0: the CPU has no bf16 dot instruction
  double amx_bf16_gflops = 0;  // tdpbf16ps on the AMX tiles; 0: none here
};

// One entry per thread count, in the order given.
std::vector<Limits> measure_limits(const std::vector<unsigned>& thread_counts);

}  // namespace bench
