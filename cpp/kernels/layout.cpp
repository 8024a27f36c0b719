// W13 interleave / de-interleave (SPEC.md "Layouts of W13").
//
// The tensor is viewed as [outer, 2I, inner]; only whole blocks of `inner` elements move along
// the 2I axis, so the code copies bits and only cares about the element size.
//   de-interleave: block 2j -> j, block 2j+1 -> I + j
//   interleave:    the inverse
#include <cstring>
#include <vector>

#include "moe_cpu.h"

namespace moe {
namespace {

// Where block `q` of an output row is read from (pull form of each permutation). Functors,
// not function pointers, so they inline; simple selects so the compiler emits conditional moves:
// along a cycle the two cases alternate unpredictably and a mispredicted branch costs more
// than the move itself.
struct DeinterleaveSource {
  size_t operator()(size_t q, size_t half) const {
    const size_t twice = 2 * q;
    return q < half ? twice : twice - (2 * half - 1);
  }
};
struct InterleaveSource {
  size_t operator()(size_t q, size_t half) const { return (q & 1) ? half + (q >> 1) : q >> 1; }
};

template <typename T>
void deinterleave_copy(const T* src, T* dst, const W13Shape& s) {
  const size_t half = s.intermediate, inner = s.inner, row = 2 * half * inner;
  const size_t block_bytes = inner * sizeof(T);
  if (s.elements() == 0) return;
  for (size_t o = 0; o < s.outer; ++o) {
    const T* in = src + o * row;
    T* gate = dst + o * row;
    T* up = gate + half * inner;
    if (inner == 1) {
      for (size_t j = 0; j < half; ++j) {
        gate[j] = in[2 * j];
        up[j] = in[2 * j + 1];
      }
    } else {
      for (size_t j = 0; j < half; ++j) {
        std::memcpy(gate + j * inner, in + 2 * j * inner, block_bytes);
        std::memcpy(up + j * inner, in + (2 * j + 1) * inner, block_bytes);
      }
    }
  }
}

template <typename T>
void interleave_copy(const T* src, T* dst, const W13Shape& s) {
  const size_t half = s.intermediate, inner = s.inner, row = 2 * half * inner;
  const size_t block_bytes = inner * sizeof(T);
  if (s.elements() == 0) return;
  for (size_t o = 0; o < s.outer; ++o) {
    const T* gate = src + o * row;
    const T* up = gate + half * inner;
    T* out = dst + o * row;
    if (inner == 1) {
      for (size_t j = 0; j < half; ++j) {
        out[2 * j] = gate[j];
        out[2 * j + 1] = up[j];
      }
    } else {
      for (size_t j = 0; j < half; ++j) {
        std::memcpy(out + 2 * j * inner, gate + j * inner, block_bytes);
        std::memcpy(out + (2 * j + 1) * inner, up + j * inner, block_bytes);
      }
    }
  }
}

// Bit q set iff q is the smallest position of a permutation cycle longer than 1. The cycles
// depend only on I, so they are found once per call and reused for every outer index.
template <typename Source>
std::vector<uint64_t> cycle_leaders(size_t n, size_t half, Source source) {
  std::vector<uint64_t> bits((n + 63) / 64, 0);
  const auto test = [&](size_t q) { return (bits[q / 64] >> (q % 64)) & 1; };
  const auto set = [&](size_t q) { bits[q / 64] |= uint64_t{1} << (q % 64); };
  // First pass marks followers: a position still unmarked when the scan reaches it is the
  // smallest of its cycle.
  for (size_t q = 0; q < n; ++q) {
    if (test(q)) continue;
    for (size_t p = source(q, half); p != q; p = source(p, half)) set(p);
  }
  for (size_t q = 0; q < n; ++q) {
    if (source(q, half) == q) set(q);  // fixed points need no move: treat them as followers
  }
  for (uint64_t& word : bits) word = ~word;
  if (n % 64) bits.back() &= (uint64_t{1} << (n % 64)) - 1;
  return bits;
}

// Calls f(q) for every cycle leader q, in ascending order. Leaders are few, so only set bits
// are visited (__builtin_ctzll: GCC and Clang, the compilers this library builds with).
template <typename F>
void for_each_leader(const std::vector<uint64_t>& leaders, F f) {
  for (size_t w = 0; w < leaders.size(); ++w) {
    for (uint64_t bits = leaders[w]; bits != 0; bits &= bits - 1) {
      f(w * 64 + static_cast<size_t>(__builtin_ctzll(bits)));
    }
  }
}

// Rows of single elements (transposed weights, biases): each cycle step is an index update
// then a dependent load, so the same cycle is walked in kRowBatch rows at once to give the CPU
// independent moves (4 measured best of 4/8/16/32 on gpt-oss shapes, over 2x faster than 1 row).
// The kRowBatch elements of `first` are the only extra data memory.
constexpr size_t kRowBatch = 4;

template <typename T, typename Source>
void permute_elements_in_place(T* data, const W13Shape& s, Source source,
                               const std::vector<uint64_t>& leaders) {
  const size_t half = s.intermediate, row = 2 * half;
  for (size_t o = 0; o < s.outer; o += kRowBatch) {
    T* r = data + o * row;
    const size_t rows = s.outer - o < kRowBatch ? s.outer - o : kRowBatch;
    for_each_leader(leaders, [&](size_t q) {
      T first[kRowBatch];
      for (size_t b = 0; b < rows; ++b) first[b] = r[b * row + q];
      size_t to = q;
      for (size_t from = source(q, half); from != q; from = source(from, half)) {
        for (size_t b = 0; b < rows; ++b) r[b * row + to] = r[b * row + from];
        to = from;
      }
      for (size_t b = 0; b < rows; ++b) r[b * row + to] = first[b];
    });
  }
}

template <typename T, typename Source>
void permute_blocks_in_place(T* data, const W13Shape& s, Source source,
                             const std::vector<uint64_t>& leaders) {
  const size_t half = s.intermediate, inner = s.inner, row = 2 * half * inner;
  const size_t block_bytes = inner * sizeof(T);
  std::vector<T> temp(inner);
  for (size_t o = 0; o < s.outer; ++o) {
    T* r = data + o * row;
    for_each_leader(leaders, [&](size_t q) {
      std::memcpy(temp.data(), r + q * inner, block_bytes);
      size_t to = q;
      for (size_t from = source(q, half); from != q; from = source(from, half)) {
        std::memcpy(r + to * inner, r + from * inner, block_bytes);
        to = from;
      }
      std::memcpy(r + to * inner, temp.data(), block_bytes);
    });
  }
}

// In place by cycle following: each cycle is rotated through one temporary block.
template <typename T, typename Source>
void permute_in_place(T* data, const W13Shape& s, Source source) {
  if (s.elements() == 0) return;
  const std::vector<uint64_t> leaders = cycle_leaders(2 * s.intermediate, s.intermediate, source);
  if (s.inner == 1) {
    permute_elements_in_place(data, s, source, leaders);
  } else {
    permute_blocks_in_place(data, s, source, leaders);
  }
}

void check_element_bytes(size_t element_bytes) {
  if (element_bytes != 2 && element_bytes != 4) {
    throw InvalidArgument("W13 layout: element size must be 2 or 4 bytes, got " +
                          std::to_string(element_bytes));
  }
}

}  // namespace

void deinterleave_w13(const void* src, void* dst, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (element_bytes == 2) {
    deinterleave_copy(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), shape);
  } else {
    deinterleave_copy(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), shape);
  }
}

void interleave_w13(const void* src, void* dst, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (element_bytes == 2) {
    interleave_copy(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), shape);
  } else {
    interleave_copy(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), shape);
  }
}

void deinterleave_w13_in_place(void* data, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (element_bytes == 2) {
    permute_in_place(static_cast<uint16_t*>(data), shape, DeinterleaveSource{});
  } else {
    permute_in_place(static_cast<uint32_t*>(data), shape, DeinterleaveSource{});
  }
}

void interleave_w13_in_place(void* data, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (element_bytes == 2) {
    permute_in_place(static_cast<uint16_t*>(data), shape, InterleaveSource{});
  } else {
    permute_in_place(static_cast<uint32_t*>(data), shape, InterleaveSource{});
  }
}

}  // namespace moe
