// The one-off costs of the W13 layout rule, measured in the same run:
//   - de-interleave of a ~200 MB bf16 W13 (moe::deinterleave_w13, out of place and in place)
//     against memcpy of the same bytes on the same single thread;
//   - packing gpt-oss-20b bf16 into a layer: time, and resident memory (VmRSS) before and
//     after, to show that packing holds no second copy once the caller drops its arrays.
#pragma once

#include "report.h"

namespace bench {

void run_deinterleave_case(int iters, Report& report);
void run_packing_case(Report& report);

}  // namespace bench
