// W13 interleave / de-interleave (docs/spec.md "Layouts of W13").
//
// The tensor is viewed as [outer, 2I, inner]; only whole blocks of `inner` elements move along
// the 2I axis, so the code copies bits and only cares about the element size.
//   de-interleave: block 2j -> j, block 2j+1 -> I + j
//   interleave:    the inverse
// Blocks of 2, 4 or 8 bytes (inner == 1, transposed weights and biases; small inner) are words
// of the SIMD split/zip kernels of the elementwise table; larger blocks are memcpy'd.
#include <cstring>
#include <vector>

#include "ukernel/elementwise_table.h"
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

// Blocks larger than a word (8 bytes), one memcpy each.
void deinterleave_blocks(const unsigned char* src, unsigned char* dst, size_t block_bytes,
                         const W13Shape& s) {
  const size_t half = s.intermediate, row = 2 * half * block_bytes;
  for (size_t o = 0; o < s.outer; ++o) {
    const unsigned char* in = src + o * row;
    unsigned char* gate = dst + o * row;
    unsigned char* up = gate + half * block_bytes;
    for (size_t j = 0; j < half; ++j) {
      std::memcpy(gate + j * block_bytes, in + 2 * j * block_bytes, block_bytes);
      std::memcpy(up + j * block_bytes, in + (2 * j + 1) * block_bytes, block_bytes);
    }
  }
}

void interleave_blocks(const unsigned char* src, unsigned char* dst, size_t block_bytes,
                       const W13Shape& s) {
  const size_t half = s.intermediate, row = 2 * half * block_bytes;
  for (size_t o = 0; o < s.outer; ++o) {
    const unsigned char* gate = src + o * row;
    const unsigned char* up = gate + half * block_bytes;
    unsigned char* out = dst + o * row;
    for (size_t j = 0; j < half; ++j) {
      std::memcpy(out + 2 * j * block_bytes, gate + j * block_bytes, block_bytes);
      std::memcpy(out + (2 * j + 1) * block_bytes, up + j * block_bytes, block_bytes);
    }
  }
}

// The kernel of the active elementwise table for blocks of `block_bytes`; null if the block
// is not a word of 2, 4 or 8 bytes.
isa::SplitFn split_kernel(size_t block_bytes) {
  const isa::ElementwiseTable& t = isa::active_elementwise();
  switch (block_bytes) {
    case 2: return t.deinterleave_16;
    case 4: return t.deinterleave_32;
    case 8: return t.deinterleave_64;
  }
  return nullptr;
}
isa::ZipFn zip_kernel(size_t block_bytes) {
  const isa::ElementwiseTable& t = isa::active_elementwise();
  switch (block_bytes) {
    case 2: return t.interleave_16;
    case 4: return t.interleave_32;
    case 8: return t.interleave_64;
  }
  return nullptr;
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

// In place, rows of words, with a half-row buffer: the split writes the evens over the front
// of the row (it reads every word before overwriting it) and the odds to the buffer, copied
// behind them; the zip reads the gates from the buffer and the ups from the back of the row it
// writes. The second pass finds the row in L1, so the tensor is read and written once.
void deinterleave_words_in_place(unsigned char* data, size_t word_bytes, const W13Shape& s,
                                 isa::SplitFn split) {
  const size_t half_bytes = s.intermediate * word_bytes;
  std::vector<unsigned char> odd(half_bytes);
  for (size_t o = 0; o < s.outer; ++o) {
    unsigned char* row = data + o * 2 * half_bytes;
    split(row, row, odd.data(), s.intermediate);
    std::memcpy(row + half_bytes, odd.data(), half_bytes);
  }
}

void interleave_words_in_place(unsigned char* data, size_t word_bytes, const W13Shape& s,
                               isa::ZipFn zip) {
  const size_t half_bytes = s.intermediate * word_bytes;
  std::vector<unsigned char> gate(half_bytes);
  for (size_t o = 0; o < s.outer; ++o) {
    unsigned char* row = data + o * 2 * half_bytes;
    std::memcpy(gate.data(), row, half_bytes);
    zip(gate.data(), row + half_bytes, row, s.intermediate);
  }
}

// In place by cycle following, for blocks larger than a word: each cycle is rotated through
// one temporary block.
template <typename Source>
void permute_blocks_in_place(unsigned char* data, size_t block_bytes, const W13Shape& s,
                             Source source) {
  const size_t half = s.intermediate, row = 2 * half * block_bytes;
  const std::vector<uint64_t> leaders = cycle_leaders(2 * half, half, source);
  std::vector<unsigned char> temp(block_bytes);
  for (size_t o = 0; o < s.outer; ++o) {
    unsigned char* r = data + o * row;
    for_each_leader(leaders, [&](size_t q) {
      std::memcpy(temp.data(), r + q * block_bytes, block_bytes);
      size_t to = q;
      for (size_t from = source(q, half); from != q; from = source(from, half)) {
        std::memcpy(r + to * block_bytes, r + from * block_bytes, block_bytes);
        to = from;
      }
      std::memcpy(r + to * block_bytes, temp.data(), block_bytes);
    });
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
  if (shape.elements() == 0) return;
  const size_t block = element_bytes * shape.inner, half = shape.intermediate;
  const auto* in = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  const isa::SplitFn split = split_kernel(block);
  if (!split) return deinterleave_blocks(in, out, block, shape);
  for (size_t o = 0; o < shape.outer; ++o) {
    const size_t row = o * 2 * half * block;
    split(in + row, out + row, out + row + half * block, half);
  }
}

void interleave_w13(const void* src, void* dst, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (shape.elements() == 0) return;
  const size_t block = element_bytes * shape.inner, half = shape.intermediate;
  const auto* in = static_cast<const unsigned char*>(src);
  auto* out = static_cast<unsigned char*>(dst);
  const isa::ZipFn zip = zip_kernel(block);
  if (!zip) return interleave_blocks(in, out, block, shape);
  for (size_t o = 0; o < shape.outer; ++o) {
    const size_t row = o * 2 * half * block;
    zip(in + row, in + row + half * block, out + row, half);
  }
}

void deinterleave_w13_in_place(void* data, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (shape.elements() == 0) return;
  const size_t block = element_bytes * shape.inner;
  auto* bytes = static_cast<unsigned char*>(data);
  if (const isa::SplitFn split = split_kernel(block)) {
    return deinterleave_words_in_place(bytes, block, shape, split);
  }
  permute_blocks_in_place(bytes, block, shape, DeinterleaveSource{});
}

void interleave_w13_in_place(void* data, size_t element_bytes, const W13Shape& shape) {
  check_element_bytes(element_bytes);
  if (shape.elements() == 0) return;
  const size_t block = element_bytes * shape.inner;
  auto* bytes = static_cast<unsigned char*>(data);
  if (const isa::ZipFn zip = zip_kernel(block)) {
    return interleave_words_in_place(bytes, block, shape, zip);
  }
  permute_blocks_in_place(bytes, block, shape, InterleaveSource{});
}

}  // namespace moe
