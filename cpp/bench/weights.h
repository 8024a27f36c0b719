// Random weights for the benchmark, of a realistic magnitude (|w| in [2^-8, 2^-4), random
// sign), as f32 or bf16 bit patterns.
#pragma once

#include <cstddef>
#include <cstdint>

#include "moe_cpu.h"

namespace bench {

// Fills `count` elements: a random block, then copies of it (at memcpy speed). A timing only
// needs the bytes to be there and the values to be sane.
void fill_random(void* data, size_t count, moe::DType dtype, uint64_t seed);

// A read-only view of `count` random elements that costs one period of physical memory: on
// Linux the same memfd pages are mapped again and again over one reserved range. The layer
// under test copies (packs) the weights into memory of its own, so only that copy is real and
// the largest presets fit. Elsewhere it falls back to an ordinary filled allocation.
class RepeatingWeights {
 public:
  RepeatingWeights(size_t count, moe::DType dtype, uint64_t seed);
  ~RepeatingWeights();
  RepeatingWeights(const RepeatingWeights&) = delete;
  RepeatingWeights& operator=(const RepeatingWeights&) = delete;
  const void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  size_t mapped_bytes_ = 0;  // 0: data_ is a malloc'ed fallback
};

}  // namespace bench
