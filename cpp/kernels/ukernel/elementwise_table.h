// The per-instruction-set elementwise kernels: vector math, gated activations and the W13
// even/odd split, as a table of function pointers chosen by cpu.cpp.
//
// ukernel/scalar/elementwise.cpp (the reference, std:: math), ukernel/avx2/elementwise.cpp and
// ukernel/avx512/elementwise.cpp each fill one table; the SIMD files follow the ODR rule of
// ukernel/ukernel.h and share their math through elementwise_math.h. They use nothing of
// moe_cpu.h but the plain fields of ActivationParams (no inline function of it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_cpu.h"

namespace moe {
namespace isa {

// out[i] = f(in[i]) for i < n; in == out is allowed.
using UnaryF32Fn = void (*)(const float* in, float* out, size_t n);

// out[j] = act(gate[j], up[j]) for j < n (docs/spec.md "Gated activations"). Precondition:
// params.kind is one of the four kinds (activation.cpp checks).
template <typename T>
using GatedFn = void (*)(const ActivationParams& params, const T* gate, const T* up, T* out,
                         size_t n);
// Interleaved pairs: out[j] = act(pairs[2j], pairs[2j + 1]) for j < n.
template <typename T>
using GatedPairsFn = void (*)(const ActivationParams& params, const T* pairs, T* out, size_t n);

// Split n pairs of W-byte words: even[j] = in[2j], odd[j] = in[2j + 1]. Pointers need no
// alignment. `even` may equal `in` (the words are read front to back, each before its slot is
// written); `odd` must not overlap `in`.
using SplitFn = void (*)(const void* in, void* even, void* odd, size_t n);
// The inverse: out[2j] = even[j], out[2j + 1] = odd[j]. `odd` may be the second half of `out`
// (odd == out + n words: the pairs are written front to back, and pair j only overwrites words
// already read); `even` must not overlap `out`.
using ZipFn = void (*)(const void* even, const void* odd, void* out, size_t n);

struct ElementwiseTable {
  const char* name;
  UnaryF32Fn exp_f32;
  UnaryF32Fn sigmoid_f32;  // 1 / (1 + exp(-x)), no NaN for large |x|
  UnaryF32Fn tanh_f32;
  UnaryF32Fn erf_f32;
  GatedFn<float> gated_f32;
  GatedFn<uint16_t> gated_bf16;  // bf16 in and out, math in fp32, rounded as f32_to_bf16
  GatedPairsFn<float> gated_pairs_f32;
  GatedPairsFn<uint16_t> gated_pairs_bf16;
  SplitFn deinterleave_16, deinterleave_32, deinterleave_64;  // W = 2, 4, 8 bytes
  ZipFn interleave_16, interleave_32, interleave_64;
};

const ElementwiseTable& scalar_elementwise();
#if defined(__x86_64__) || defined(_M_X64)
const ElementwiseTable& avx2_elementwise();
const ElementwiseTable& avx512_elementwise();
#endif
#if defined(__aarch64__) && !defined(_WIN32)
const ElementwiseTable& neon_elementwise();
#endif
#if defined(__aarch64__) && defined(__linux__)
// The NEON functions under the name of the sve kernel set (ukernel/neon/elementwise.cpp says why).
const ElementwiseTable& sve_elementwise();
#endif

// The table of the kernel set chosen by cpu.cpp (cpu_info().kernel).
const ElementwiseTable& active_elementwise();

}  // namespace isa
}  // namespace moe
