// What a MoeLayer holds: its configuration, the packed weights (format/pack.h) and the
// micro-kernels chosen for them (ukernel/registry.cpp). Shared by moe/layer.cpp (packing) and
// moe/forward.cpp (the driver).
#pragma once

#include <vector>

#include "aligned_buffer.h"
#include "format/format.h"
#include "format/panel.h"
#include "moe_cpu.h"
#include "thread_pool.h"
#include "ukernel/ukernel.h"

namespace moe {

// The packed matrices of one kind (W13's gate and up, or W2): rows x depth each.
struct PackedMatrices {
  size_t rows = 0;
  size_t depth = 0;
  size_t padded = 0;        // depth rounded up to kPanelDepth
  size_t panel_bytes = 0;
  size_t matrix_bytes = 0;  // one matrix

  PackedMatrices() = default;
  PackedMatrices(const FormatInfo& format, size_t rows_, size_t depth_)
      : rows(rows_), depth(depth_), padded(padded_depth(depth_)), panel_bytes(format.panel_bytes(padded)),
        matrix_bytes(panel_count(rows_) * panel_bytes) {}
  // Start of row r (a multiple of kPanelRows) of matrix m.
  const uint8_t* at(const AlignedBuffer& buffer, size_t m, size_t r) const {
    return buffer.as<uint8_t>() + m * matrix_bytes + (r / kPanelRows) * panel_bytes;
  }
};

struct MoeLayer::Packed {
  MoeConfig config;
  const FormatInfo* format = nullptr;
  PackedMatrices w13_shape;    // gate and up of each expert: I x H
  PackedMatrices w2_shape;     // W2 of each expert: H x I
  AlignedBuffer w13;           // per expert: gate, then up
  AlignedBuffer w2;
  std::vector<float> w13_bias;  // [E][2I], halves; empty if none
  std::vector<float> w2_bias;   // [E][H]; empty if none
  // With a subset of experts: the local index of each of the model's experts, -1 if not held.
  std::vector<int32_t> local_of;
  ukernel::Choice kernels{};
  KernelChoice kernel_names;

  unsigned threads() const { return config.threads ? config.threads : physical_core_count(); }
};

// Sets a layer's configuration, format, kernels and packed shapes (everything but the
// buffers), checking the configuration: moe/layer.cpp, for packing and for packed-layer files.
void prepare_packed(MoeLayer::Packed& p, const MoeConfig& config);

// The forward of moe/forward.cpp on validated arguments (tokens > 0); ids are the layer's own
// expert indices, -1 for a route to an expert it does not hold (that route adds nothing).
void forward_packed(const MoeLayer::Packed& p, DType activation_dtype, const void* hidden, size_t tokens,
                    const int32_t* ids, const float* route_weights, void* out);

}  // namespace moe
