#include "pack.h"

#include <algorithm>
#include <cstring>

#include "thread_pool.h"

namespace moe {

namespace {

// Panels per pool task: 16 panels = 64 rows, enough to amortise the hand-out of a task.
constexpr size_t kPanelsPerTask = 16;

template <typename T>
void pack_rows(const ExpertTensor& s, T* dst, size_t matrix, size_t r0, size_t r1) {
  const PanelShape shape{s.rows, s.depth};
  const size_t expert = matrix / s.parts, part = matrix % s.parts;
  const size_t source_rows = s.parts * s.rows;  // rows of one expert in the caller's tensor
  const T* src = static_cast<const T*>(s.data) + expert * source_rows * s.depth;
  T* out = dst + matrix * shape.elements();
  auto source_row = [&](size_t r) {
    return s.parts == 2 ? w13_source_row(s.layout, part * s.rows + r, s.rows) : r;
  };
  // Zero the padding (rows past the end in the last panel, depth past `depth`) first.
  if (s.depth % kPanelDepth != 0 || r1 % kPanelRows != 0) {
    const size_t p0 = r0 / kPanelRows, p1 = (r1 + kPanelRows - 1) / kPanelRows;
    std::memset(out + p0 * shape.panel_elements(), 0, (p1 - p0) * shape.panel_elements() * sizeof(T));
  }
  if (!s.transposed) {
    // Rows are contiguous in the source: copy them a chunk at a time.
    for (size_t r = r0; r < r1; ++r) {
      const T* row = src + source_row(r) * s.depth;
      for (size_t k = 0; k < s.depth; k += kPanelDepth) {
        std::memcpy(out + shape.index(r, k), row + k, std::min(kPanelDepth, s.depth - k) * sizeof(T));
      }
    }
    return;
  }
  // Source is [depth][rows]: for each depth index, the block's rows sit side by side.
  for (size_t k = 0; k < s.depth; ++k) {
    const T* column = src + k * source_rows;
    for (size_t r = r0; r < r1; ++r) out[shape.index(r, k)] = column[source_row(r)];
  }
}

template <typename T>
void pack_all(const ExpertTensor& s, T* dst, unsigned threads) {
  const PanelShape shape{s.rows, s.depth};
  const size_t tasks_per_matrix = (shape.panels() + kPanelsPerTask - 1) / kPanelsPerTask;
  ThreadPool::shared().run(s.experts * s.parts * tasks_per_matrix, threads, [&](size_t task) {
    const size_t matrix = task / tasks_per_matrix;
    const size_t r0 = (task % tasks_per_matrix) * kPanelsPerTask * kPanelRows;
    pack_rows(s, dst, matrix, r0, std::min(s.rows, r0 + kPanelsPerTask * kPanelRows));
  });
}

}  // namespace

void pack_panels(const ExpertTensor& src, void* dst, unsigned threads) {
  if (src.element_bytes == 2) {
    pack_all(src, static_cast<uint16_t*>(dst), threads);
  } else if (src.element_bytes == 4) {
    pack_all(src, static_cast<uint32_t*>(dst), threads);
  } else {
    throw InvalidArgument("pack_panels: element size must be 2 or 4 bytes");
  }
}

}  // namespace moe
