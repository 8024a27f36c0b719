// The per-instruction-set kernels behind the MoE forward, as a table of function pointers.
//
// Each ISA file (scalar.cpp, avx2.cpp, avx512.cpp, neon*.cpp, sve*.cpp) is compiled with its
// own target flags and fills one table. ODR rule for those files: every function they define,
// but the table or kernel they export, lives in an anonymous namespace, and they call no inline
// function or template shared with other files (no std::min, no std::vector): the linker keeps
// one copy of such a function, and it could be the one compiled with AVX-512 (or SVE) and then
// run on a CPU without it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../panel.h"

namespace moe {
namespace isa {

// Dot products of packed weight rows with token rows, fp32 accumulation:
//   out[r * tokens + t] = sum over i < n of W[r][i] * x[t][i]
// for r < rows, t < tokens, where W is the matrix whose panels (panel.h) start at `panels`,
// packed with padded depth `padded_depth` (n rounded up to kPanelDepth). Each (r, t) sum is
// computed in the same order whatever `rows` and `tokens` are, so results depend neither on
// batching nor on the split across threads. x rows are read only below n.
template <typename W, typename X>
using DotFn = void (*)(const W* panels, size_t padded_depth, size_t rows, const X* const* x,
                       size_t tokens, size_t n, float* out);

struct KernelTable {
  const char* name;
  DotFn<float, float> dot_f32_f32;
  DotFn<uint16_t, float> dot_bf16_f32;    // bf16 weights widened in registers
  DotFn<uint16_t, uint16_t> dot_bf16_bf16;  // native bf16 dot products; null if the ISA has none
};

const KernelTable& scalar_table();
#if defined(__x86_64__) || defined(_M_X64)
const KernelTable& avx2_table();
// `with_bf16_dot`: the CPU has AVX512-BF16 (vdpbf16ps).
const KernelTable& avx512_table(bool with_bf16_dot);
#endif
#if defined(__aarch64__) && !defined(_WIN32)
// `with_bf16_dot`: the CPU has the Advanced SIMD bf16 instructions (HWCAP2_BF16).
const KernelTable& neon_table(bool with_bf16_dot);
// BFDOT kernel of neon_bf16.cpp, the one file compiled with +bf16; used by neon_table(true).
void dot_bf16_bf16_neon_bfdot(const uint16_t* panels, size_t padded_depth, size_t rows,
                              const uint16_t* const* x, size_t tokens, size_t n, float* out);
#endif
#if defined(__aarch64__) && defined(__linux__)
// `with_bf16_dot`: the CPU has the SVE bf16 instructions (HWCAP2_SVEBF16).
const KernelTable& sve_table(bool with_bf16_dot);
// BFDOT kernel of sve_bf16.cpp (compiled with +sve+bf16); used by sve_table(true).
void dot_bf16_bf16_sve_bfdot(const uint16_t* panels, size_t padded_depth, size_t rows,
                             const uint16_t* const* x, size_t tokens, size_t n, float* out);
#endif

// The table chosen by dispatch.cpp (CPU detection, MOE_CPU_ISA).
const KernelTable& active_table();

}  // namespace isa
}  // namespace moe
