// The fused MoE forward (scalar path).
//
// forward() runs in three passes over the shared thread pool, with the dot products of the
// kernel set dispatch.cpp chose (isa/):
//   1. per (expert, block of channels): gate and up rows against the expert's tokens,
//      + bias, activation -> a[route][I]   (no [T, 2I] buffer: the epilogue runs per row pair)
//   2. per (expert, block of output rows): W2 rows against a -> y[route][H] (+ bias)
//   3. per token: out[t] = sum over slots k, in slot order, of weight[t,k] * y[t,k]
// Each output value is computed by exactly one task in a fixed order, so results are
// identical for every thread count.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "aligned_buffer.h"
#include "isa/elementwise_table.h"
#include "isa/kernel_table.h"
#include "moe_cpu.h"
#include "pack.h"
#include "thread_pool.h"

namespace moe {

namespace {

// Rows (W13 channels, or W2 rows) per pass-1/pass-2 task: as many as possible, since each task
// restarts the weight stream (256 bf16 rows of gpt-oss = 1.5 MB: +5% decode bandwidth over
// 64), while every thread still gets kTasksPerThread tasks to balance the load. Multiples of
// kPanelRows, so a task starts on a panel. Results do not depend on it: a row's dot products
// are the same whichever task computes them.
constexpr size_t kMinRowsPerTask = 64;
constexpr size_t kMaxRowsPerTask = 256;
constexpr size_t kTasksPerThread = 4;

size_t rows_per_task(size_t rows, size_t experts, unsigned threads) {
  size_t per = rows * experts / (static_cast<size_t>(threads) * kTasksPerThread);
  per = std::max(kMinRowsPerTask, std::min(kMaxRowsPerTask, per));
  return per / kPanelRows * kPanelRows;
}

// Tokens per pass-3 task.
constexpr size_t kTokensPerTask = 8;

size_t element_bytes(DType dtype) { return dtype == DType::bf16 ? 2 : 4; }

void require(bool ok, const std::string& message) {
  if (!ok) throw InvalidArgument(message);
}

// Tokens routed to one expert, as indices into the [T*K] route list (token-major order).
struct ExpertGroup {
  size_t expert;
  std::vector<size_t> routes;
};

}  // namespace

struct MoeLayer::Packed {
  MoeConfig config;
  AlignedBuffer w13;              // per expert: gate [I][H], then up [I][H], in panels
  AlignedBuffer w2;               // per expert: [H][I], in panels
  std::vector<float> w13_bias;    // [E][2I], halves; empty if none
  std::vector<float> w2_bias;     // [E][H]; empty if none

  unsigned threads() const { return config.threads ? config.threads : physical_core_count(); }
  // One gate or up matrix of W13, and one W2 matrix, in panels.
  PanelShape w13_shape() const { return {config.intermediate_size, config.hidden_size}; }
  PanelShape w2_shape() const { return {config.hidden_size, config.intermediate_size}; }
};

MoeLayer::MoeLayer(const MoeConfig& config, const MoeWeights& weights)
    : packed_(new Packed) {
  const size_t E = config.num_experts, H = config.hidden_size, I = config.intermediate_size;
  require(E > 0 && H > 0 && I > 0, "MoeLayer: num_experts, hidden_size and intermediate_size must be > 0");
  require(config.top_k > 0 && config.top_k <= E, "MoeLayer: top_k must be in [1, num_experts]");
  require(weights.w13 && weights.w2, "MoeLayer: w13 and w2 are required");
  Packed& p = *packed_;
  p.config = config;
  const size_t bytes = element_bytes(config.weight_dtype);
  p.w13 = AlignedBuffer(2 * E * p.w13_shape().elements() * bytes);
  p.w2 = AlignedBuffer(E * p.w2_shape().elements() * bytes);
  const unsigned threads = p.threads();
  pack_panels({weights.w13, bytes, E, 2, I, H, config.w13_layout, config.transposed}, p.w13.as<void>(), threads);
  pack_panels({weights.w2, bytes, E, 1, H, I, W13Layout::halves, config.transposed}, p.w2.as<void>(), threads);

  auto to_f32 = [&](const void* src, size_t i) {
    return config.weight_dtype == DType::bf16 ? bf16_to_f32(static_cast<const uint16_t*>(src)[i])
                                              : static_cast<const float*>(src)[i];
  };
  if (weights.w13_bias) {
    p.w13_bias.resize(E * 2 * I);
    for (size_t e = 0; e < E; ++e) {
      for (size_t r = 0; r < 2 * I; ++r) {
        p.w13_bias[e * 2 * I + r] = to_f32(weights.w13_bias, e * 2 * I + w13_source_row(config.w13_layout, r, I));
      }
    }
  }
  if (weights.w2_bias) {
    p.w2_bias.resize(E * H);
    for (size_t i = 0; i < E * H; ++i) p.w2_bias[i] = to_f32(weights.w2_bias, i);
  }
}

MoeLayer::~MoeLayer() = default;

const MoeConfig& MoeLayer::config() const { return packed_->config; }

size_t MoeLayer::bytes() const {
  const Packed& p = *packed_;
  return p.w13.bytes() + p.w2.bytes() + (p.w13_bias.size() + p.w2_bias.size()) * sizeof(float);
}

namespace {

// With bf16 weights and f32 activations, the native bf16 dot products (which round the
// activations to bf16) pay off once an expert's weights are reused by this many tokens on
// average; below it the call is bound by memory and the exact f32 path costs nothing extra.
constexpr size_t kBf16DotMinTokensPerExpert = 4;

// Token rows fed to the dot products, in f32 or bf16; `rows[g]` lists group g's rows.
template <typename X>
struct TokenRows {
  std::vector<X> storage;
  std::vector<std::vector<const X*>> rows;
};

// The dot products of one (weights, activations) combination, as chosen for this forward.
struct DotPlan {
  const isa::KernelTable* table;
  DType weights;
  bool bf16_activations;  // token rows (x and a) are bf16: native bf16 dot products

  void run(const void* w, size_t padded_depth, size_t rows, const void* const* x, size_t tokens,
           size_t n, float* out) const {
    if (weights == DType::f32) {
      table->dot_f32_f32(static_cast<const float*>(w), padded_depth, rows, reinterpret_cast<const float* const*>(x), tokens, n, out);
    } else if (bf16_activations) {
      table->dot_bf16_bf16(static_cast<const uint16_t*>(w), padded_depth, rows, reinterpret_cast<const uint16_t* const*>(x), tokens, n, out);
    } else {
      table->dot_bf16_f32(static_cast<const uint16_t*>(w), padded_depth, rows, reinterpret_cast<const float* const*>(x), tokens, n, out);
    }
  }
};

void forward_impl(const MoeLayer::Packed& p, DType act_dtype, const void* hidden, size_t T,
                  const int32_t* ids, const float* route_weights, void* out) {
  const MoeConfig& cfg = p.config;
  const size_t E = cfg.num_experts, H = cfg.hidden_size, I = cfg.intermediate_size, K = cfg.top_k;
  const size_t wbytes = element_bytes(cfg.weight_dtype);
  const unsigned threads = p.threads();
  ThreadPool& pool = ThreadPool::shared();

  // Group routes by expert, token-major inside each group.
  std::vector<ExpertGroup> groups;
  {
    std::vector<size_t> group_of(E, SIZE_MAX);
    std::vector<size_t> counts(E, 0);
    for (size_t r = 0; r < T * K; ++r) ++counts[ids[r]];
    for (size_t e = 0; e < E; ++e) {
      if (!counts[e]) continue;
      group_of[e] = groups.size();
      groups.push_back({e, {}});
      groups.back().routes.reserve(counts[e]);
    }
    for (size_t r = 0; r < T * K; ++r) groups[group_of[ids[r]]].routes.push_back(r);
  }

  DotPlan plan{&isa::active_table(), cfg.weight_dtype, false};
  const isa::ElementwiseTable& elementwise = isa::active_elementwise();
  if (cfg.weight_dtype == DType::bf16 && plan.table->dot_bf16_bf16) {
    plan.bf16_activations = act_dtype == DType::bf16 || T * K >= kBf16DotMinTokensPerExpert * groups.size();
  }
  const bool round_a = act_dtype == DType::bf16 || plan.bf16_activations;

  // Token rows x for W13, in the dtype the dot products take (the caller's array if it is).
  std::vector<float> x_f32;
  std::vector<uint16_t> x_bf16;
  const void* x = hidden;
  if (plan.bf16_activations && act_dtype == DType::f32) {
    x_bf16.resize(T * H);
    convert_f32_to_bf16(static_cast<const float*>(hidden), x_bf16.data(), T * H);
    x = x_bf16.data();
  } else if (!plan.bf16_activations && act_dtype == DType::bf16) {
    x_f32.resize(T * H);
    convert_bf16_to_f32(static_cast<const uint16_t*>(hidden), x_f32.data(), T * H);
    x = x_f32.data();
  }
  const size_t xbytes = plan.bf16_activations ? 2 : 4;

  // a [T*K][I] (expert activations, input of W2) and y [T*K][H] (expert outputs).
  std::vector<uint8_t> a(T * K * I * xbytes);
  std::vector<float> y(T * K * H);
  std::vector<std::vector<const void*>> x_rows(groups.size()), a_rows(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t r : groups[g].routes) {
      x_rows[g].push_back(static_cast<const uint8_t*>(x) + (r / K) * H * xbytes);
      a_rows[g].push_back(a.data() + r * I * xbytes);
    }
  }

  // Pass 1: gate and up rows of a block of channels, then bias + activation on the tile.
  const size_t channels_per_task = rows_per_task(I, groups.size(), threads);
  const size_t channel_tasks = (I + channels_per_task - 1) / channels_per_task;
  pool.run(groups.size() * channel_tasks, threads, [&](size_t task) {
    const size_t g = task / channel_tasks, c0 = (task % channel_tasks) * channels_per_task;
    const size_t c1 = std::min(I, c0 + channels_per_task), rows = c1 - c0;
    const ExpertGroup& group = groups[g];
    const size_t n = group.routes.size();
    const PanelShape shape = p.w13_shape();
    const uint8_t* gate_w = p.w13.as<uint8_t>() + (2 * group.expert * shape.elements() + shape.index(c0, 0)) * wbytes;
    const uint8_t* up_w = gate_w + shape.elements() * wbytes;
    std::vector<float> gate(rows * n), up(rows * n);
    plan.run(gate_w, shape.padded_depth(), rows, x_rows[g].data(), n, H, gate.data());
    plan.run(up_w, shape.padded_depth(), rows, x_rows[g].data(), n, H, up.data());
    // Epilogue on the tile: + bias, activation (vectorised), scatter to each route's row of a.
    if (!p.w13_bias.empty()) {
      const float* bias = p.w13_bias.data() + group.expert * 2 * I;
      for (size_t j = 0; j < rows; ++j) {
        for (size_t t = 0; t < n; ++t) {
          gate[j * n + t] += bias[c0 + j];
          up[j * n + t] += bias[I + c0 + j];
        }
      }
    }
    elementwise.gated_f32(cfg.activation, gate.data(), up.data(), gate.data(), rows * n);
    for (size_t j = 0; j < rows; ++j) {
      for (size_t t = 0; t < n; ++t) {
        const float v = gate[j * n + t];
        const size_t at = group.routes[t] * I + c0 + j;
        if (plan.bf16_activations) {
          reinterpret_cast<uint16_t*>(a.data())[at] = f32_to_bf16(v);
        } else {
          reinterpret_cast<float*>(a.data())[at] = round_a ? bf16_to_f32(f32_to_bf16(v)) : v;
        }
      }
    }
  });

  // Pass 2: W2 rows against the activations, + bias.
  const size_t w2_rows_per_task = rows_per_task(H, groups.size(), threads);
  const size_t row_tasks = (H + w2_rows_per_task - 1) / w2_rows_per_task;
  pool.run(groups.size() * row_tasks, threads, [&](size_t task) {
    const size_t g = task / row_tasks, r0 = (task % row_tasks) * w2_rows_per_task;
    const size_t rows = std::min(H, r0 + w2_rows_per_task) - r0;
    const ExpertGroup& group = groups[g];
    const size_t n = group.routes.size();
    const PanelShape shape = p.w2_shape();
    const uint8_t* w = p.w2.as<uint8_t>() + (group.expert * shape.elements() + shape.index(r0, 0)) * wbytes;
    std::vector<float> sums(rows * n);
    plan.run(w, shape.padded_depth(), rows, a_rows[g].data(), n, I, sums.data());
    const float* bias = p.w2_bias.empty() ? nullptr : p.w2_bias.data() + group.expert * H;
    for (size_t r = 0; r < rows; ++r) {
      const float b = bias ? bias[r0 + r] : 0.0f;
      for (size_t t = 0; t < n; ++t) y[group.routes[t] * H + r0 + r] = sums[r * n + t] + b;
    }
  });

  // Pass 3: weighted sum over the slots, in slot order, rounded once.
  const size_t token_tasks = (T + kTokensPerTask - 1) / kTokensPerTask;
  pool.run(token_tasks, threads, [&](size_t task) {
    std::vector<float> sum(H);
    for (size_t t = task * kTokensPerTask; t < std::min(T, (task + 1) * kTokensPerTask); ++t) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (size_t k = 0; k < K; ++k) {
        const float w = route_weights[t * K + k];
        const float* yk = y.data() + (t * K + k) * H;
        for (size_t h = 0; h < H; ++h) sum[h] += w * yk[h];
      }
      if (act_dtype == DType::bf16) {
        convert_f32_to_bf16(sum.data(), static_cast<uint16_t*>(out) + t * H, H);
      } else {
        std::copy(sum.begin(), sum.end(), static_cast<float*>(out) + t * H);
      }
    }
  });
}

}  // namespace

void MoeLayer::forward(DType activation_dtype, const void* hidden, size_t tokens,
                       const int32_t* ids, const float* route_weights, void* out) const {
  const Packed& p = *packed_;
  const size_t E = p.config.num_experts, K = p.config.top_k;
  // Validate everything before the first write to `out`.
  for (size_t r = 0; r < tokens * K; ++r) {
    if (ids[r] < 0 || static_cast<size_t>(ids[r]) >= E) {
      throw InvalidArgument("ids: element " + std::to_string(r) + " is " + std::to_string(ids[r]) +
                            ", expected an expert id in [0, " + std::to_string(E) + ")");
    }
    if (!std::isfinite(route_weights[r])) {
      throw InvalidArgument("weights: element " + std::to_string(r) + " is not finite");
    }
  }
  if (tokens == 0) return;
  forward_impl(p, activation_dtype, hidden, tokens, ids, route_weights, out);
}

}  // namespace moe
