// Router logits (the input of docs/spec.md "Routing"): logits[t, e] = hidden[t] · weight[e] + bias[e],
// fp32 accumulation. A GEMV of E rows per token: small next to the experts, so the portable
// dot-product tiles of dot.h are enough.
#include <algorithm>
#include <string>
#include <vector>

#include "dot.h"
#include "moe_cpu.h"
#include "thread_pool.h"

namespace moe {
namespace {

// Below this many multiply-adds the call is too small to be worth waking the pool.
constexpr size_t kMinParallelMacs = size_t{1} << 20;
// Router rows per pool task: enough work per task to amortise the hand-out.
constexpr size_t kRowsPerTask = 4;

template <typename W>
void logits_rows(const W* weight, const float* const* x, size_t tokens, size_t hidden_size,
                 size_t num_experts, const float* bias, size_t row_begin, size_t row_end,
                 float* logits) {
  std::vector<float> sums(tokens);
  for (size_t e = row_begin; e < row_end; ++e) {
    dot::row_times_token_list(weight + e * hidden_size, x, tokens, hidden_size, sums.data());
    const float b = bias ? bias[e] : 0.0f;
    for (size_t t = 0; t < tokens; ++t) logits[t * num_experts + e] = sums[t] + b;
  }
}

}  // namespace

void router_logits(DType hidden_dtype, const void* hidden, size_t tokens, size_t hidden_size,
                   DType weight_dtype, const void* weight, size_t num_experts, const float* bias,
                   float* logits, unsigned threads) {
  if (hidden_size == 0 || num_experts == 0) {
    throw InvalidArgument("router: hidden size and number of experts must be positive, got " +
                          std::to_string(hidden_size) + " and " + std::to_string(num_experts));
  }
  if (tokens == 0) return;
  // The tiles read f32 activations: widen bf16 hidden once (exact).
  std::vector<float> widened;
  const float* x = static_cast<const float*>(hidden);
  if (hidden_dtype == DType::bf16) {
    widened.resize(tokens * hidden_size);
    convert_bf16_to_f32(static_cast<const uint16_t*>(hidden), widened.data(), widened.size());
    x = widened.data();
  }
  std::vector<const float*> rows(tokens);
  for (size_t t = 0; t < tokens; ++t) rows[t] = x + t * hidden_size;

  auto run = [&](size_t begin, size_t end) {
    if (weight_dtype == DType::bf16) {
      logits_rows(static_cast<const uint16_t*>(weight), rows.data(), tokens, hidden_size,
                  num_experts, bias, begin, end, logits);
    } else {
      logits_rows(static_cast<const float*>(weight), rows.data(), tokens, hidden_size,
                  num_experts, bias, begin, end, logits);
    }
  };
  const unsigned n = threads ? threads : physical_core_count();
  if (n <= 1 || tokens * hidden_size * num_experts < kMinParallelMacs) {
    run(0, num_experts);
    return;
  }
  const size_t tasks = (num_experts + kRowsPerTask - 1) / kRowsPerTask;
  ThreadPool::shared().run(tasks, n, [&](size_t task) {
    run(task * kRowsPerTask, std::min(num_experts, (task + 1) * kRowsPerTask));
  });
}

}  // namespace moe
