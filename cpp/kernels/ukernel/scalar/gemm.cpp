// Scalar micro-kernels: the reference every SIMD kernel is tested against, and the fallback on
// any CPU. Plain C++ the compiler may auto-vectorise for the baseline ISA (SSE2, armv8-a NEON).
// Formats other than f32 and bf16 are decoded row by row by their format's own scalar decode
// (format/), so these kernels compute with exactly the decoded weights.
#include <cstring>

#include "format/format.h"
#include "format/panel.h"
#include "ukernel/ukernel.h"

namespace moe {
namespace ukernel {

namespace {

// Partial sums per (row, token), summed in a fixed tree at the end.
constexpr size_t kLanes = 8;
// Tokens per pass over a weight row: each weight element is loaded once for all of them.
constexpr size_t kTokensPerPass = 4;

inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// NT tokens against one row whose chunks of kPanelDepth lie `stride` elements apart. Element j
// of a chunk always lands in lane j % kLanes, in both the full-chunk loop (which the compiler
// vectorises) and the tail, so the sum does not depend on NT.
template <size_t NT, typename W, typename X>
void row_times_tokens(const W* row, size_t stride, const X* const* x, size_t n, float* out) {
  float lanes[NT][kLanes] = {};
  size_t k0 = 0;
  for (; k0 + kPanelDepth <= n; k0 += kPanelDepth) {
    const W* w = row + (k0 / kPanelDepth) * stride;
    for (size_t j = 0; j < kPanelDepth; j += kLanes) {
      for (size_t t = 0; t < NT; ++t) {
        for (size_t l = 0; l < kLanes; ++l) lanes[t][l] += widen(w[j + l]) * widen(x[t][k0 + j + l]);
      }
    }
  }
  if (k0 < n) {
    const W* w = row + (k0 / kPanelDepth) * stride;
    for (size_t j = 0; k0 + j < n; ++j) {
      for (size_t t = 0; t < NT; ++t) lanes[t][j % kLanes] += widen(w[j]) * widen(x[t][k0 + j]);
    }
  }
  for (size_t t = 0; t < NT; ++t) {
    const float a = (lanes[t][0] + lanes[t][4]) + (lanes[t][1] + lanes[t][5]);
    const float b = (lanes[t][2] + lanes[t][6]) + (lanes[t][3] + lanes[t][7]);
    out[t] = a + b;
  }
}

template <typename W, typename X>
void row_times_token_list(const W* row, size_t stride, const X* const* x, size_t tokens, size_t n, float* o) {
  size_t t = 0;
  for (; t + kTokensPerPass <= tokens; t += kTokensPerPass) row_times_tokens<kTokensPerPass>(row, stride, x + t, n, o + t);
  switch (tokens - t) {
    case 3: row_times_tokens<3>(row, stride, x + t, n, o + t); break;
    case 2: row_times_tokens<2>(row, stride, x + t, n, o + t); break;
    case 1: row_times_tokens<1>(row, stride, x + t, n, o + t); break;
    default: break;
  }
}

// Dense f32 or bf16 panels, read in place.
template <typename W, typename X>
void gemm_dense(const uint8_t* panels, size_t panel_bytes, size_t, size_t rows, const void* const* x_rows,
                size_t tokens, size_t n, float* out, void*) {
  const auto* const* x = reinterpret_cast<const X* const*>(x_rows);
  for (size_t r = 0; r < rows; ++r) {
    const W* row = reinterpret_cast<const W*>(panels + (r / kPanelRows) * panel_bytes) + (r % kPanelRows) * kPanelDepth;
    row_times_token_list(row, kPanelRows * kPanelDepth, x, tokens, n, out + r * tokens);
  }
}

// Any format: each row decoded to f32 by the format's decode (into scratch), then as f32.
template <WeightFormat F>
void gemm_decoded(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows, const void* const* x_rows,
                  size_t tokens, size_t n, float* out, void* scratch) {
  const auto* const* x = reinterpret_cast<const float* const*>(x_rows);
  const FormatInfo& format = format_info(F);
  float* row = static_cast<float*>(scratch);
  for (size_t r = 0; r < rows; ++r) {
    format.decode_panel_row(panels + (r / kPanelRows) * panel_bytes, padded, r % kPanelRows, row);
    row_times_token_list(row, kPanelDepth, x, tokens, n, out + r * tokens);
  }
}

constexpr auto kF = DType::f32;
constexpr auto kP = PanelLayout::p4x32;

const UKernel kKernels[] = {
    {"gemm_f32_f32__scalar_1x4", WeightFormat::f32, kF, kP, 1, 4, Regime::any, "scalar", "", 0, gemm_dense<float, float>},
    {"gemm_bf16_f32__scalar_1x4", WeightFormat::bf16, kF, kP, 1, 4, Regime::any, "scalar", "", 0, gemm_dense<uint16_t, float>},
    {"gemm_f16_f32__scalar_1x4", WeightFormat::f16, kF, kP, 1, 4, Regime::any, "scalar", "", 4, gemm_decoded<WeightFormat::f16>},
    {"gemm_mxfp4_f32__scalar_1x4", WeightFormat::mxfp4, kF, kP, 1, 4, Regime::any, "scalar", "", 4, gemm_decoded<WeightFormat::mxfp4>},
    {"gemm_int8_f32__scalar_1x4", WeightFormat::int8, kF, kP, 1, 4, Regime::any, "scalar", "", 4, gemm_decoded<WeightFormat::int8>},
};

}  // namespace

UKernelList scalar_ukernels() { return {kKernels, sizeof kKernels / sizeof kKernels[0]}; }

}  // namespace ukernel
}  // namespace moe
