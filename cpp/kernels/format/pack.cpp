#include "format/pack.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "format/panel.h"
#include "thread_pool.h"

namespace moe {

namespace {

// Panels per pool task: 16 panels = 64 rows, enough to amortise the hand-out of a task (and a
// transposed source's block of rows is gathered with each cache line read once).
constexpr size_t kPanelsPerTask = 16;

void require(bool ok, const std::string& message) {
  if (!ok) throw InvalidArgument(message);
}

// Packs rows [r0, r1) of one matrix.
void pack_rows(const ExpertTensor& s, const FormatInfo& src_format, const FormatInfo& format, uint8_t* dst,
               size_t matrix, size_t r0, size_t r1) {
  const size_t padded = padded_depth(s.depth), panel = format.panel_bytes(padded);
  const size_t expert = matrix / s.parts, part = matrix % s.parts;
  const size_t source_rows = s.parts * s.rows;  // rows of one expert in the caller's tensor
  const size_t code_bytes = src_format.row_code_bytes(s.depth), scale_bytes = src_format.row_scale_bytes(s.depth);
  // Expert `expert` of the caller's tensor: its own pointers (per expert), or its offset in the whole.
  const uint8_t* codes;
  const uint8_t* scales;
  if (s.tensor.per_expert()) {
    codes = static_cast<const uint8_t*>(s.tensor.expert_data[expert]);
    scales = s.tensor.expert_scales.empty() ? nullptr : static_cast<const uint8_t*>(s.tensor.expert_scales[expert]);
  } else {
    codes = static_cast<const uint8_t*>(s.tensor.data) + expert * source_rows * code_bytes;
    scales = s.tensor.scales ? static_cast<const uint8_t*>(s.tensor.scales) + expert * source_rows * scale_bytes : nullptr;
  }
  uint8_t* out = dst + matrix * panel_count(s.rows) * panel;
  auto source_row = [&](size_t r) { return s.parts == 2 ? w13_source_row(s.layout, part * s.rows + r, s.rows) : r; };

  // Zero the padding (rows past the end in the last panel, depth past `depth`) first.
  const size_t p0 = r0 / kPanelRows, p1 = panel_count(r1);
  if (s.depth != padded || r1 % kPanelRows != 0) std::memset(out + p0 * panel, 0, (p1 - p0) * panel);

  // A transposed source ([depth][rows], dense formats only) is gathered into row order first.
  std::vector<uint8_t> gathered;
  const size_t esize = src_format.block_bytes;
  if (s.transposed) {
    gathered.resize((r1 - r0) * code_bytes);
    for (size_t k = 0; k < s.depth; ++k) {
      const uint8_t* column = codes + k * source_rows * esize;
      for (size_t r = r0; r < r1; ++r) std::memcpy(&gathered[(r - r0) * code_bytes + k * esize], column + source_row(r) * esize, esize);
    }
  }
  std::vector<float> values(src_format.format == format.format ? 0 : s.depth);
  std::vector<uint8_t> converted(values.empty() ? 0 : format.row_code_bytes(s.depth) + format.row_scale_bytes(s.depth));
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* row_codes = s.transposed ? &gathered[(r - r0) * code_bytes] : codes + source_row(r) * code_bytes;
    const uint8_t* row_scales = scales ? scales + source_row(r) * scale_bytes : nullptr;
    if (!values.empty()) {
      src_format.decode_row(row_codes, row_scales, s.depth, values.data());
      uint8_t* c = converted.data();
      format.encode_row(values.data(), s.depth, c, c + format.row_code_bytes(s.depth));
      row_codes = c;
      row_scales = c + format.row_code_bytes(s.depth);
    }
    format.pack_row_native(row_codes, row_scales, s.depth, padded, out + (r / kPanelRows) * panel, r % kPanelRows);
  }
}

}  // namespace

size_t packed_matrix_bytes(const FormatInfo& format, size_t rows, size_t depth) {
  return panel_count(rows) * format.panel_bytes(padded_depth(depth));
}

void check_packable(const ExpertTensor& src, const FormatInfo& format) {
  const FormatInfo& src_format = format_info(src.tensor.format);
  const WeightTensor& t = src.tensor;
  if (t.per_expert()) {
    require(t.data == nullptr && t.scales == nullptr, "pack_panels: a tensor is given whole or per expert, not both");
    require(t.expert_data.size() == src.experts, "pack_panels: " + std::to_string(t.expert_data.size()) +
                                                     " per-expert arrays for " + std::to_string(src.experts) + " experts");
    require(t.expert_scales.size() == (src_format.quantized() ? src.experts : 0),
            std::string("pack_panels: ") + src_format.name + " per-expert weights need " +
                (src_format.quantized() ? std::to_string(src.experts) + " per-expert scales" : "no scales") + ", got " +
                std::to_string(t.expert_scales.size()));
    for (size_t e = 0; e < src.experts; ++e) {
      require(t.expert_data[e] != nullptr, "pack_panels: no data for expert " + std::to_string(e));
      require(!src_format.quantized() || t.expert_scales[e] != nullptr, "pack_panels: no scales for expert " + std::to_string(e));
    }
  } else {
    require(t.data != nullptr, "pack_panels: no data");
    require(t.expert_scales.empty(), "pack_panels: per-expert scales with whole data");
    require(!src_format.quantized() || t.scales != nullptr,
            std::string("pack_panels: ") + src_format.name + " weights need their scales");
  }
  require(!(src.transposed && src_format.quantized()),
          std::string("transposed: ") + src_format.name + " blocks run along the input axis of each output row; "
          "quantized weights cannot be transposed");
  require(src.depth % src_format.block_values == 0 && src.depth % format.block_values == 0,
          std::string("depth ") + std::to_string(src.depth) + " is not a multiple of the " +
              (src_format.quantized() ? src_format.name : format.name) + " block of 32 values");
}

void pack_panels(const ExpertTensor& src, const FormatInfo& format, uint8_t* dst, unsigned threads) {
  check_packable(src, format);
  const FormatInfo& src_format = format_info(src.tensor.format);
  const size_t tasks_per_matrix = (panel_count(src.rows) + kPanelsPerTask - 1) / kPanelsPerTask;
  ThreadPool::shared().run(src.experts * src.parts * tasks_per_matrix, threads, [&](size_t task) {
    const size_t matrix = task / tasks_per_matrix;
    const size_t r0 = (task % tasks_per_matrix) * kPanelsPerTask * kPanelRows;
    pack_rows(src, src_format, format, dst, matrix, r0, std::min(src.rows, r0 + kPanelsPerTask * kPanelRows));
  });
}

TensorGeometry tensor_geometry(WeightFormat format, size_t rows, size_t depth) {
  const FormatInfo& f = format_info(format);
  const size_t bytes_per_element = f.quantized() ? 1 : f.block_bytes;  // typed array element size
  if (depth % f.block_values != 0) return {false, 0, 0};
  return {true, rows * f.row_code_bytes(depth) / bytes_per_element,
          f.quantized() ? rows * depth / f.block_values : 0};
}

void quantize_rows(WeightFormat format, const float* values, size_t rows, size_t depth, void* codes, void* scales) {
  const FormatInfo& f = format_info(format);
  require(depth % f.block_values == 0, std::string(f.name) + ": depth must be a multiple of " + std::to_string(f.block_values));
  for (size_t r = 0; r < rows; ++r) {
    f.encode_row(values + r * depth, depth, static_cast<uint8_t*>(codes) + r * f.row_code_bytes(depth),
                 scales ? static_cast<uint8_t*>(scales) + r * f.row_scale_bytes(depth) : nullptr);
  }
}

void dequantize_rows(WeightFormat format, const void* codes, const void* scales, size_t rows, size_t depth,
                     float* values) {
  const FormatInfo& f = format_info(format);
  require(depth % f.block_values == 0, std::string(f.name) + ": depth must be a multiple of " + std::to_string(f.block_values));
  for (size_t r = 0; r < rows; ++r) {
    f.decode_row(static_cast<const uint8_t*>(codes) + r * f.row_code_bytes(depth),
                 scales ? static_cast<const uint8_t*>(scales) + r * f.row_scale_bytes(depth) : nullptr, depth,
                 values + r * depth);
  }
}

}  // namespace moe
