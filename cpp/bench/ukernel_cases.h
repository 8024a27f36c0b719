// Every runnable micro-kernel of the registry on one gpt-oss-20b-sized matrix, single thread.
#pragma once

#include "report.h"

namespace bench {

void run_ukernel_cases(Report& report, int iters);

}  // namespace bench
