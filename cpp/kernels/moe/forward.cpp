// The MoE driver: route grouping, the W13 pass with its bias + activation epilogue, the W2
// pass and the slot-ordered sum. It knows no instruction set and no weight encoding: the
// layer's micro-kernels (ukernel/) read the packed panels, and the regime decides which one.
//
// forward runs in three passes over the shared thread pool:
//   1. per (expert, block of channels): gate and up rows against the expert's tokens,
//      + bias, activation -> a[route][I]   (no [T, 2I] buffer: the epilogue runs on the tile)
//   2. per (expert, block of output rows): W2 rows against a -> y[route][H] (+ bias)
//   3. per block of tokens: out[t] = sum over slots k, in slot order, of weight[t,k] * y[t,k]
// Each output value is computed by exactly one task in a fixed order, so results are
// identical for every thread count. Scratch is one arena per calling thread, a slice per pool
// thread, reused from call to call.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "moe/packed.h"
#include "ukernel/elementwise_table.h"

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

// Routes grouped by expert: routes[begin[g] .. begin[g + 1]) are group g's indices into the
// [T*K] route list (token-major order), all for expert[g].
struct Groups {
  std::vector<size_t> expert, begin, routes;
  size_t count() const { return expert.size(); }
  size_t size(size_t g) const { return begin[g + 1] - begin[g]; }
  size_t largest = 0;
};

// Routes to id -1 (an expert a subset layer does not hold) are left out.
Groups group_routes(const int32_t* ids, size_t routes, size_t experts) {
  Groups g;
  std::vector<size_t> counts(experts, 0), slot(experts, 0);
  size_t held = 0;
  for (size_t r = 0; r < routes; ++r) {
    if (ids[r] < 0) continue;
    ++counts[ids[r]];
    ++held;
  }
  g.begin.push_back(0);
  for (size_t e = 0; e < experts; ++e) {
    if (!counts[e]) continue;
    slot[e] = g.begin.back();
    g.expert.push_back(e);
    g.begin.push_back(g.begin.back() + counts[e]);
    g.largest = std::max(g.largest, counts[e]);
  }
  g.routes.resize(held);
  for (size_t r = 0; r < routes; ++r) {
    if (ids[r] >= 0) g.routes[slot[ids[r]]++] = r;
  }
  return g;
}

// Per-thread scratch of one call: the kernel's own, and the tile of dot products. The memory is
// kept by the calling thread from call to call (grown when a call needs more): a fresh
// allocation of a few MB per call is fresh pages, and their faults cost more than a decode.
struct Workspace {
  size_t kernel_bytes, tile_floats, stride;
  uint8_t* base;
  Workspace(size_t kernel, size_t tile, unsigned slots)
      : kernel_bytes((kernel + 63) / 64 * 64), tile_floats(tile),
        stride(kernel_bytes + (2 * tile * sizeof(float) + 63) / 64 * 64), base(arena(stride * slots)) {}
  void* kernel(unsigned slot) const { return base + slot * stride; }
  float* tile(unsigned slot) const { return reinterpret_cast<float*>(base + slot * stride + kernel_bytes); }

 private:
  static uint8_t* arena(size_t bytes) {
    thread_local AlignedBuffer buffer;
    if (buffer.bytes() < bytes) buffer = AlignedBuffer(bytes);
    return buffer.as<uint8_t>();
  }
};

}  // namespace

void forward_packed(const MoeLayer::Packed& p, DType act_dtype, const void* hidden, size_t T, const int32_t* ids,
                    const float* route_weights, void* out) {
  const MoeConfig& cfg = p.config;
  const size_t E = cfg.num_experts, H = cfg.hidden_size, I = cfg.intermediate_size, K = cfg.top_k;
  const unsigned threads = p.threads();
  ThreadPool& pool = ThreadPool::shared();
  const Groups groups = group_routes(ids, T * K, E);
  const size_t G = groups.count(), R = groups.routes.size();  // R: routes to experts held

  // The regime: prefill once an expert's weights serve enough tokens; bf16 activations go to
  // a kernel that takes them as they are.
  // The tile kernel (AMX) once a 16-token tile is filled well enough on average.
  const ukernel::UKernel* kernel = p.kernels.decode;
  if (R >= ukernel::kPrefillMinTokensPerExpert * G ||
      (act_dtype == DType::bf16 && p.kernels.prefill->activations == DType::bf16)) {
    kernel = p.kernels.prefill;
  }
  if (p.kernels.tiles && R >= ukernel::kTilesMinTokensPerExpert * G) kernel = p.kernels.tiles;
  const bool bf16_rows = kernel->activations == DType::bf16;
  const bool round_a = act_dtype == DType::bf16 || bf16_rows;
  const isa::ElementwiseTable& elementwise = isa::active_elementwise();

  // Token rows x for W13, in the dtype the kernel takes (the caller's array if it is).
  std::vector<float> x_f32;
  std::vector<uint16_t> x_bf16;
  const void* x = hidden;
  if (bf16_rows && act_dtype == DType::f32) {
    x_bf16.resize(T * H);
    convert_f32_to_bf16(static_cast<const float*>(hidden), x_bf16.data(), T * H);
    x = x_bf16.data();
  } else if (!bf16_rows && act_dtype == DType::bf16) {
    x_f32.resize(T * H);
    convert_bf16_to_f32(static_cast<const uint16_t*>(hidden), x_f32.data(), T * H);
    x = x_f32.data();
  }
  const size_t xbytes = bf16_rows ? 2 : 4;

  // a [T*K][I] (expert activations, input of W2) and y [T*K][H] (expert outputs), and each
  // group's row pointers into x and a.
  std::vector<uint8_t> a(T * K * I * xbytes);
  std::vector<float> y(T * K * H);
  std::vector<const void*> x_rows(R), a_rows(R);
  for (size_t i = 0; i < R; ++i) {
    const size_t r = groups.routes[i];
    x_rows[i] = static_cast<const uint8_t*>(x) + (r / K) * H * xbytes;
    a_rows[i] = a.data() + r * I * xbytes;
  }

  const size_t channels_per_task = rows_per_task(I, G, threads);
  const size_t w2_rows_per_task = rows_per_task(H, G, threads);
  const Workspace ws(kernel->scratch_bytes(std::max(p.w13_shape.padded, p.w2_shape.padded), groups.largest),
                     std::max(std::max(channels_per_task, w2_rows_per_task) * groups.largest, H), threads);

  // Pass 1: gate and up rows of a block of channels, then bias + activation on the tile.
  const size_t channel_tasks = (I + channels_per_task - 1) / channels_per_task;
  pool.run_slots(G * channel_tasks, threads, [&](size_t task, unsigned slot) {
    const size_t g = task / channel_tasks, c0 = (task % channel_tasks) * channels_per_task;
    const size_t rows = std::min(I, c0 + channels_per_task) - c0;
    const size_t expert = groups.expert[g], n = groups.size(g);
    const size_t* routes = &groups.routes[groups.begin[g]];
    const PackedMatrices& m = p.w13_shape;
    float* gate = ws.tile(slot);
    float* up = gate + ws.tile_floats;
    kernel->fn(m.at(p.w13, 2 * expert, c0), m.panel_bytes, m.padded, rows, &x_rows[groups.begin[g]], n, H, gate, ws.kernel(slot));
    kernel->fn(m.at(p.w13, 2 * expert + 1, c0), m.panel_bytes, m.padded, rows, &x_rows[groups.begin[g]], n, H, up, ws.kernel(slot));
    // Epilogue on the tile: + bias, activation (vectorised), scatter to each route's row of a.
    if (!p.w13_bias.empty()) {
      const float* bias = p.w13_bias.data() + expert * 2 * I;
      for (size_t j = 0; j < rows; ++j) {
        for (size_t t = 0; t < n; ++t) {
          gate[j * n + t] += bias[c0 + j];
          up[j * n + t] += bias[I + c0 + j];
        }
      }
    }
    elementwise.gated_f32(cfg.activation, gate, up, gate, rows * n);
    for (size_t j = 0; j < rows; ++j) {
      for (size_t t = 0; t < n; ++t) {
        const float v = gate[j * n + t];
        const size_t at = routes[t] * I + c0 + j;
        if (bf16_rows) {
          reinterpret_cast<uint16_t*>(a.data())[at] = f32_to_bf16(v);
        } else {
          reinterpret_cast<float*>(a.data())[at] = round_a ? bf16_to_f32(f32_to_bf16(v)) : v;
        }
      }
    }
  });

  // Pass 2: W2 rows against the activations, + bias.
  const size_t row_tasks = (H + w2_rows_per_task - 1) / w2_rows_per_task;
  pool.run_slots(G * row_tasks, threads, [&](size_t task, unsigned slot) {
    const size_t g = task / row_tasks, r0 = (task % row_tasks) * w2_rows_per_task;
    const size_t rows = std::min(H, r0 + w2_rows_per_task) - r0;
    const size_t expert = groups.expert[g], n = groups.size(g);
    const size_t* routes = &groups.routes[groups.begin[g]];
    const PackedMatrices& m = p.w2_shape;
    float* sums = ws.tile(slot);
    kernel->fn(m.at(p.w2, expert, r0), m.panel_bytes, m.padded, rows, &a_rows[groups.begin[g]], n, I, sums, ws.kernel(slot));
    const float* bias = p.w2_bias.empty() ? nullptr : p.w2_bias.data() + expert * H;
    for (size_t r = 0; r < rows; ++r) {
      const float b = bias ? bias[r0 + r] : 0.0f;
      for (size_t t = 0; t < n; ++t) y[routes[t] * H + r0 + r] = sums[r * n + t] + b;
    }
  });

  // Pass 3: weighted sum over the slots, in slot order, rounded once.
  const size_t token_tasks = (T + kTokensPerTask - 1) / kTokensPerTask;
  pool.run_slots(token_tasks, threads, [&](size_t task, unsigned slot) {
    float* sum = ws.tile(slot);
    for (size_t t = task * kTokensPerTask; t < std::min(T, (task + 1) * kTokensPerTask); ++t) {
      std::fill(sum, sum + H, 0.0f);
      for (size_t k = 0; k < K; ++k) {
        if (ids[t * K + k] < 0) continue;  // an expert this layer does not hold adds nothing
        const float w = route_weights[t * K + k];
        const float* yk = y.data() + (t * K + k) * H;
        for (size_t h = 0; h < H; ++h) sum[h] += w * yk[h];
      }
      if (act_dtype == DType::bf16) {
        convert_f32_to_bf16(sum, static_cast<uint16_t*>(out) + t * H, H);
      } else {
        std::copy(sum, sum + H, static_cast<float*>(out) + t * H);
      }
    }
  });
}

}  // namespace moe
