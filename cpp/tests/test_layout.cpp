// W13 interleave / de-interleave (layout.cpp) against the naive index mapping of docs/spec.md
// "Layouts of W13", for 4-byte (f32) and 2-byte (bf16) elements.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"
#include "test_reference.h"

using namespace moetest;

namespace {

// Elements before and after each buffer that no call may touch.
constexpr size_t kGuard = 5;

// Distinct values: an odd multiplier is a bijection modulo 2^bits, so element i never equals
// the sentinel, which is element `count`.
template <typename T>
T distinct_value(size_t i) {
  return static_cast<T>(i * 40503u + 7u);
}

template <typename T>
struct Buffer {
  std::vector<T> storage;
  size_t count;
  T sentinel;
  Buffer(size_t n, T fill) : storage(n + 2 * kGuard, fill), count(n), sentinel(fill) {}
  T* data() { return storage.data() + kGuard; }
  std::vector<T> body() const {
    return std::vector<T>(storage.begin() + kGuard, storage.begin() + kGuard + count);
  }
  bool guards_intact() const {
    for (size_t i = 0; i < kGuard; ++i)
      if (storage[i] != sentinel || storage[kGuard + count + i] != sentinel) return false;
    return true;
  }
};

template <typename T>
void check_layout_shape(size_t outer, size_t I, size_t inner) {
  const moe::W13Shape shape{outer, I, inner};
  const size_t n = shape.elements();
  const size_t bytes = sizeof(T);
  const T sentinel = distinct_value<T>(n);
  std::vector<T> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = distinct_value<T>(i);
  const std::string where = "elem " + std::to_string(bytes) + "B [" + std::to_string(outer) +
                            ", 2*" + std::to_string(I) + ", " + std::to_string(inner) + "]";

  // Out of place, both directions, against the index mapping.
  Buffer<T> de(n, sentinel), inter(n, sentinel);
  moe::deinterleave_w13(src.data(), de.data(), bytes, shape);
  moe::interleave_w13(src.data(), inter.data(), bytes, shape);
  CHECK_MSG(de.body() == permute_w13(src, outer, I, inner, false), "deinterleave_w13 " << where);
  CHECK_MSG(inter.body() == permute_w13(src, outer, I, inner, true), "interleave_w13 " << where);
  CHECK_MSG(de.guards_intact() && inter.guards_intact(), "wrote outside the output " << where);

  // interleave o deinterleave is the identity.
  Buffer<T> back(n, sentinel);
  moe::interleave_w13(de.data(), back.data(), bytes, shape);
  CHECK_MSG(back.body() == src, "interleave(deinterleave(x)) != x " << where);

  // In place equals out of place.
  Buffer<T> de_in_place(n, sentinel), inter_in_place(n, sentinel);
  std::memcpy(de_in_place.data(), src.data(), n * bytes);
  std::memcpy(inter_in_place.data(), src.data(), n * bytes);
  moe::deinterleave_w13_in_place(de_in_place.data(), bytes, shape);
  moe::interleave_w13_in_place(inter_in_place.data(), bytes, shape);
  CHECK_MSG(de_in_place.body() == de.body(), "deinterleave_w13_in_place " << where);
  CHECK_MSG(inter_in_place.body() == inter.body(), "interleave_w13_in_place " << where);
  CHECK_MSG(de_in_place.guards_intact() && inter_in_place.guards_intact(),
            "in-place call wrote outside the buffer " << where);
  moe::interleave_w13_in_place(de_in_place.data(), bytes, shape);
  CHECK_MSG(de_in_place.body() == src, "in-place interleave(deinterleave(x)) != x " << where);
}

template <typename T>
void check_layout_sweep() {
  for (size_t outer : {1, 2, 3})
    for (size_t I : {1, 3, 17, 33})
      for (size_t inner : {1, 3, 5, 64}) check_layout_shape<T>(outer, I, inner);
  // gpt-oss sizes: long permutation cycles for the in-place algorithm.
  check_layout_shape<T>(1, 2880, 1);
  check_layout_shape<T>(2, 2880, 3);
  check_layout_shape<T>(3, 1000, 1);
}

}  // namespace

TEST(layout_f32_sweep) { check_layout_sweep<uint32_t>(); }
TEST(layout_bf16_sweep) { check_layout_sweep<uint16_t>(); }

TEST(layout_bad_element_size_throws) {
  const moe::W13Shape shape{2, 3, 5};
  std::vector<uint64_t> a(shape.elements()), b(shape.elements());
  for (size_t bytes : {0, 1, 3, 8}) {
    CHECK_THROWS(moe::InvalidArgument, moe::deinterleave_w13(a.data(), b.data(), bytes, shape),
                 "element size " << bytes);
    CHECK_THROWS(moe::InvalidArgument, moe::interleave_w13(a.data(), b.data(), bytes, shape),
                 "element size " << bytes);
    CHECK_THROWS(moe::InvalidArgument, moe::deinterleave_w13_in_place(a.data(), bytes, shape),
                 "element size " << bytes);
    CHECK_THROWS(moe::InvalidArgument, moe::interleave_w13_in_place(a.data(), bytes, shape),
                 "element size " << bytes);
  }
}
