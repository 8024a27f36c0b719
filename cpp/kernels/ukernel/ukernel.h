// Micro-kernels: descriptors and the registry.
//
// A micro-kernel computes dot products of packed weight rows (format/panel.h) with token rows,
// fp32 accumulation:
//   out[r * tokens + t] = sum over i < n of W[r][i] * x[t][i]
// for r < rows, t < tokens, where W's panels start at `panels`, each `panel_bytes` long, of
// padded depth `padded` (n rounded up to kPanelDepth). Each (r, t) sum is computed in the
// same order whatever `rows` and `tokens` are, so results depend neither on batching nor on
// the split across threads. x rows are read only below n. Kernels that decode a panel once
// for all tokens (prefill) use `scratch`: scratch_bytes(padded, tokens) bytes, 64-byte
// aligned, owned by the calling thread.
//
// Each instruction set's files (ukernel/<isa>/) are compiled with their own target flags and
// export one array of descriptors. ODR rule for those files: every function they define, but
// the array they export, lives in an anonymous namespace, and they call no inline function or
// template shared with other files (no std::min, no std::vector): the linker keeps one copy of
// such a function, and it could be the one compiled with AVX-512 (or SVE) and then run on a
// CPU without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "moe_cpu.h"

namespace moe {
namespace ukernel {

using GemmFn = void (*)(const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows,
                        const void* const* x, size_t tokens, size_t n, float* out, void* scratch);

// What a kernel is for: decode (few tokens per expert, bound by the weight stream), prefill
// (many, bound by arithmetic), or both.
enum class Regime { decode, prefill, any };

// The packed layout a kernel reads; packing is chosen together with the kernels.
enum class PanelLayout { p4x32 };  // format/panel.h

struct UKernel {
  const char* name;          // gemm_<weights>_<activations>__<isa>_<rows>x<tokens>
  WeightFormat weights;
  DType activations;         // token rows: f32, or bf16 (native bf16 dot products)
  PanelLayout layout;
  unsigned tile_rows;
  unsigned tile_tokens;
  Regime regime;
  const char* kernel_set;    // the MOE_CPU_ISA name it belongs to
  const char* features;      // CPU features it needs beyond its kernel set's, space-separated
  size_t scratch_per_depth;  // scratch bytes per padded-depth element (0: none); a decoded
                             // dense panel is kPanelRows values per depth element
  GemmFn fn;
  // A decode kernel with f32 activations that computes with exactly the decoded weights in the
  // f32 kernel's order gives that kernel's bits; others are held to f32 rounding (docs/spec.md).
  bool same_bits_as_f32 = true;
  // Scratch bytes per padded-depth element and token (tokens rounded up to tile_tokens): the
  // token rows laid out once per call for a matrix unit (AMX tiles).
  size_t scratch_per_token_depth = 0;

  size_t scratch_bytes(size_t padded, size_t tokens) const {
    const size_t rounded = (tokens + tile_tokens - 1) / tile_tokens * tile_tokens;
    return (scratch_per_depth + scratch_per_token_depth * rounded) * padded;
  }
};

struct UKernelList {
  const UKernel* items;
  size_t count;
};

// Per-ISA arrays (ukernel/<isa>/*.cpp), best first inside each.
UKernelList scalar_ukernels();
#if defined(__x86_64__) || defined(_M_X64)
UKernelList avx2_ukernels();
UKernelList avx512_ukernels();
UKernelList amx_ukernels();
#endif
#if defined(__aarch64__) && !defined(_WIN32)
UKernelList neon_ukernels();
UKernelList neon_bf16_ukernels();
#endif
#if defined(__aarch64__) && defined(__linux__)
UKernelList sve_ukernels();
UKernelList sve_bf16_ukernels();
#endif

// Every compiled micro-kernel, best first, scalar last (ukernel/registry.cpp).
const std::vector<const UKernel*>& registry();

// Whether this CPU can run `k` (its kernel set's features and its own).
bool runnable(const UKernel& k);

// The kernels a layer of `format` uses under kernel set `kernel_set`: the first runnable entry
// of the registry of that set (else of the set it extends, else of scalar) for each regime.
// The decode kernel takes f32 activations. A set built on a matrix unit (amx) has prefill
// kernels only: `tiles` is its kernel, used from kTilesMinTokensPerExpert tokens per expert,
// and decode and smaller prefills run on the set it extends (avx512); nullptr elsewhere.
struct Choice {
  const UKernel* decode;
  const UKernel* prefill;
  const UKernel* tiles;
};
Choice choose(WeightFormat format, const std::string& kernel_set);

// The kernel set a set extends, whose kernels it uses where it has none of its own ("" for
// none): amx extends avx512.
const char* extended_set(const std::string& kernel_set);

// From this many tokens per selected expert (on average) a forward uses the prefill kernel:
// below it the call is bound by the weight stream and the exact-f32 decode kernel costs
// nothing extra (measured on Zen 4, bf16: T=4 x K=4 over 16 experts).
constexpr size_t kPrefillMinTokensPerExpert = 4;

// From this many tokens per selected expert (on average) a forward uses the tile kernel: a
// 16-token tile then holds enough tokens to beat the vector prefill kernel, whose weight
// stream is read once however few tokens there are (measured on the device Xeon, bf16).
constexpr size_t kTilesMinTokensPerExpert = 8;

}  // namespace ukernel
}  // namespace moe
