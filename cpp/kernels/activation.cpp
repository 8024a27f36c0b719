// Gated activations over [tokens, 2I] rows (docs/spec.md "Gated activations"), through the
// elementwise table of the active kernel set. The scalar math and the one-channel
// gated_activation live in ukernel/scalar/elementwise.cpp.
#include <string>

#include "ukernel/elementwise_table.h"
#include "moe_cpu.h"

namespace moe {
namespace {

void check_arguments(const ActivationParams& params, W13Layout layout) {
  if (layout != W13Layout::halves && layout != W13Layout::interleaved) {
    throw InvalidArgument("activation: unknown W13 layout " +
                          std::to_string(static_cast<int>(layout)));
  }
  switch (params.kind) {
    case Activation::swigluoai:
    case Activation::silu:
    case Activation::gelu:
    case Activation::gelu_tanh: return;
  }
  throw InvalidArgument("activation: unknown kind " +
                        std::to_string(static_cast<int>(params.kind)));
}

// Interleaved rows back to back are one run of tokens * I pairs; halves go row by row.
template <typename T, typename Halves, typename Pairs>
void apply_rows(const ActivationParams& params, W13Layout layout, const T* in, T* out,
                size_t tokens, size_t half, Halves halves, Pairs pairs) {
  check_arguments(params, layout);
  if (layout == W13Layout::interleaved) return pairs(params, in, out, tokens * half);
  for (size_t t = 0; t < tokens; ++t) {
    const T* row = in + t * 2 * half;
    halves(params, row, row + half, out + t * half, half);
  }
}

}  // namespace

void gated_activation_f32(const ActivationParams& params, W13Layout layout, const float* in,
                          float* out, size_t tokens, size_t intermediate) {
  const isa::ElementwiseTable& table = isa::active_elementwise();
  apply_rows(params, layout, in, out, tokens, intermediate, table.gated_f32,
             table.gated_pairs_f32);
}

void gated_activation_bf16(const ActivationParams& params, W13Layout layout, const uint16_t* in,
                           uint16_t* out, size_t tokens, size_t intermediate) {
  const isa::ElementwiseTable& table = isa::active_elementwise();
  apply_rows(params, layout, in, out, tokens, intermediate, table.gated_bf16,
             table.gated_pairs_bf16);
}

}  // namespace moe
