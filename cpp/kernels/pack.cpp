#include "pack.h"

#include <algorithm>
#include <cstring>

#include "thread_pool.h"

namespace moe {

namespace {

// Square tiles for the transposed copy: 64 x 64 x 4 bytes stays well inside L1 on both ends.
constexpr size_t kTransposeTile = 64;
// Rows per pool task for the plain copy: large enough to amortise task hand-out.
constexpr size_t kRowsPerTask = 64;

template <typename T>
void pack_tile(const T* src, T* dst, size_t rows, size_t cols, W13Layout layout,
               bool transposed, size_t r0, size_t r1) {
  size_t half = rows / 2;  // only used for interleaved W13, where rows == 2I
  if (!transposed) {
    for (size_t r = r0; r < r1; ++r) {
      std::memcpy(dst + r * cols, src + w13_source_row(layout, r, half) * cols, cols * sizeof(T));
    }
    return;
  }
  // Source is [cols][rows]: dst[r][c] = src[c][source_row(r)], done in tiles.
  for (size_t c0 = 0; c0 < cols; c0 += kTransposeTile) {
    size_t c1 = std::min(cols, c0 + kTransposeTile);
    for (size_t r = r0; r < r1; ++r) {
      const T* column = src + w13_source_row(layout, r, half);
      T* out = dst + r * cols;
      for (size_t c = c0; c < c1; ++c) out[c] = column[c * rows];
    }
  }
}

template <typename T>
void pack_all(const T* src, T* dst, size_t experts, size_t rows, size_t cols, W13Layout layout,
              bool transposed, unsigned threads) {
  size_t block = transposed ? kTransposeTile : kRowsPerTask;
  size_t blocks_per_expert = (rows + block - 1) / block;
  ThreadPool::shared().run(experts * blocks_per_expert, threads, [&](size_t task) {
    size_t e = task / blocks_per_expert;
    size_t r0 = (task % blocks_per_expert) * block;
    size_t r1 = std::min(rows, r0 + block);
    size_t matrix = rows * cols;
    pack_tile(src + e * matrix, dst + e * matrix, rows, cols, layout, transposed, r0, r1);
  });
}

}  // namespace

void pack_expert_matrices(const void* src, void* dst, size_t element_bytes, size_t experts,
                          size_t rows, size_t cols, W13Layout layout, bool transposed,
                          unsigned threads) {
  if (element_bytes == 2) {
    pack_all(static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst), experts, rows, cols,
             layout, transposed, threads);
  } else if (element_bytes == 4) {
    pack_all(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), experts, rows, cols,
             layout, transposed, threads);
  } else {
    throw InvalidArgument("pack_expert_matrices: element size must be 2 or 4 bytes");
  }
}

}  // namespace moe
