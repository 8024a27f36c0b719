// Every micro-kernel of the registry (ukernel/ukernel.h) of the active kernel set, against
// float64 on the exactly decoded weights and against the scalar kernel of its format, on odd
// sizes: rows that do not fill a panel, token counts around every tile width (AVX2 3,
// AVX-512 and NEON 6, SVE 4), depths around every vector and chunk width (multiples of the
// 32-value block for quantized formats), activation rows misaligned and fenced with NaN (a
// kernel reading x past n turns a result into NaN), outputs pre-filled with NaN and guarded.
// Decode kernels with f32 activations must equal, bit for bit, the f32 kernel of their set
// run on the decoded weights (they compute with exactly those weights).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "aligned_buffer.h"
#include "format/format.h"
#include "format/pack.h"
#include "format/panel.h"
#include "moe_cpu.h"
#include "test_harness.h"
#include "ukernel/ukernel.h"

using namespace moetest;
using moe::ukernel::UKernel;

namespace {

const size_t kRows[] = {1, 3, 4, 5, 9};
const size_t kTokens[] = {1, 2, 3, 4, 5, 6, 7, 13};
// The tile kernels (AMX: 32 x 32 blocks of 16 x 16 tiles) also get sizes past one and two
// tiles, odd at both ends.
const size_t kTileRows[] = {1, 17, 33, 70};
const size_t kTileTokens[] = {1, 15, 17, 33, 50};
const size_t kDepths[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 100, 257};
const size_t kBlockDepths[] = {32, 64, 96, 160, 288};
constexpr size_t kFence = 8;  // NaN elements before and after each activation row

// Error bound of an n-term f32 dot product, relative to the sum of |products| (the condition
// of the sum, so cancellation cannot make a correct kernel fail): n roundings of at most one
// ulp (BFDOT rounds to odd), times 2 for the products and the final reduction.
double dot_tolerance(size_t n) { return static_cast<double>(n + 8) * std::ldexp(1.0, -22); }
// Kernels that round weights or activations to bf16 (prefill): two bf16 roundings of 2^-9.
constexpr double kBf16Tolerance = 4.0 * 0x1p-9;

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// A [rows][n] matrix in `format`, packed by the library's packer, and its exactly decoded
// values (decoded from the caller-layout codes, not from the panels).
struct Matrix {
  const moe::FormatInfo& format;
  size_t rows, n, padded, panel_bytes;
  std::vector<float> values;  // decoded, [rows][n]
  moe::AlignedBuffer panels;
  Matrix(moe::WeightFormat f, size_t rows_, size_t n_, Rng& rng)
      : format(moe::format_info(f)), rows(rows_), n(n_), padded(moe::padded_depth(n_)),
        panel_bytes(format.panel_bytes(padded)), values(rows_ * n_),
        panels(moe::packed_matrix_bytes(format, rows_, n_)) {
    std::vector<float> source(rows * n);
    for (float& v : source) v = rng.uniform(-1, 1) * (rng.uniform(0, 1) < 0.1 ? 8.0f : 1.0f);
    std::vector<uint8_t> codes(rows * format.row_code_bytes(n)), scales(rows * format.row_scale_bytes(n) + 1);
    moe::quantize_rows(f, source.data(), rows, n, codes.data(), scales.data());
    moe::dequantize_rows(f, codes.data(), scales.data(), rows, n, values.data());
    std::memset(panels.as<void>(), 0xA5, panels.bytes());  // padding must be written by the packer
    moe::pack_panels({{f, codes.data(), format.quantized() ? scales.data() : nullptr}, 1, 1, rows, n,
                      moe::W13Layout::halves, false},
                     format, panels.as<uint8_t>(), 1);
  }
};

// The same decoded values packed as f32 panels.
struct F32Panels {
  moe::AlignedBuffer panels;
  size_t panel_bytes;
  explicit F32Panels(const Matrix& m)
      : panels(moe::packed_matrix_bytes(moe::kFormatF32, m.rows, m.n)), panel_bytes(moe::kFormatF32.panel_bytes(m.padded)) {
    moe::pack_panels({{moe::WeightFormat::f32, m.values.data(), nullptr}, 1, 1, m.rows, m.n, moe::W13Layout::halves, false},
                     moe::kFormatF32, panels.as<uint8_t>(), 1);
  }
};

// Token rows of n values (f32, and the same values rounded to bf16), each in its own
// NaN-fenced slice, starting `misalign` elements off.
struct TokenRows {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<const void*> f32_rows, bf16_rows;
  std::vector<std::vector<double>> values_f32, values_bf16;
  TokenRows(size_t tokens, size_t n, size_t misalign, Rng& rng) {
    const size_t stride = n + 2 * kFence + misalign;
    f32.assign(tokens * stride, quiet_nan());
    bf16.assign(tokens * stride, kBf16QuietNan);
    for (size_t t = 0; t < tokens; ++t) {
      const size_t at = t * stride + kFence + misalign;
      values_f32.emplace_back(n);
      values_bf16.emplace_back(n);
      for (size_t k = 0; k < n; ++k) {
        f32[at + k] = rng.uniform(-1, 1);
        bf16[at + k] = moe::f32_to_bf16(f32[at + k]);
        values_f32[t][k] = f32[at + k];
        values_bf16[t][k] = moe::bf16_to_f32(bf16[at + k]);
      }
    }
    for (size_t t = 0; t < tokens; ++t) {
      f32_rows.push_back(f32.data() + t * stride + kFence + misalign);
      bf16_rows.push_back(bf16.data() + t * stride + kFence + misalign);
    }
  }
};

// fn on a NaN-filled output with a guard after rows * tokens; the guard is checked here.
std::vector<float> call(const UKernel& k, const uint8_t* panels, size_t panel_bytes, size_t padded, size_t rows,
                        const void* const* x, size_t tokens, size_t n, const std::string& where) {
  std::vector<float> out(rows * tokens + kFence, quiet_nan());
  moe::AlignedBuffer scratch(k.scratch_bytes(padded, tokens) + 64);
  k.fn(panels, panel_bytes, padded, rows, x, tokens, n, out.data(), scratch.as<void>());
  for (size_t i = rows * tokens; i < out.size(); ++i) CHECK_MSG(std::isnan(out[i]), "wrote past out: " << where);
  out.resize(rows * tokens);
  return out;
}

// Largest |out - ref| / sum |products|, against float64 on the decoded weights (rounded to
// bf16 where the kernel rounds them); NaN in out gives +inf.
double worst_error(const Matrix& m, const TokenRows& x, bool bf16_x, bool bf16_w, const std::vector<float>& out,
                   size_t rows, size_t tokens) {
  double worst = 0;
  for (size_t r = 0; r < rows; ++r)
    for (size_t t = 0; t < tokens; ++t) {
      double s = 0, mag = 0;
      for (size_t k = 0; k < m.n; ++k) {
        const double w = bf16_w ? moe::bf16_to_f32(moe::f32_to_bf16(m.values[r * m.n + k])) : m.values[r * m.n + k];
        const double p = w * (bf16_x ? x.values_bf16[t][k] : x.values_f32[t][k]);
        s += p;
        mag += std::fabs(p);
      }
      const double e = std::fabs(out[r * tokens + t] - s) / (mag > 0 ? mag : 1.0);
      worst = std::isnan(e) ? INFINITY : std::fmax(worst, e);
    }
  return worst;
}

const UKernel* find(moe::WeightFormat f, const char* kernel_set, moe::ukernel::Regime regime) {
  for (const UKernel* k : moe::ukernel::registry()) {
    if (k->weights == f && std::string(k->kernel_set) == kernel_set && k->activations == moe::DType::f32 &&
        moe::ukernel::runnable(*k) && (k->regime == regime || k->regime == moe::ukernel::Regime::any)) {
      return k;
    }
  }
  return nullptr;
}

void check_kernel(const UKernel& k) {
  const bool bf16 = k.activations == moe::DType::bf16;
  const bool exact_decode = !bf16 && k.regime != moe::ukernel::Regime::prefill && k.same_bits_as_f32;
  const UKernel* f32_kernel = find(moe::WeightFormat::f32, k.kernel_set, moe::ukernel::Regime::decode);
  const UKernel* scalar = find(k.weights, "scalar", moe::ukernel::Regime::decode);
  const moe::FormatInfo& format = moe::format_info(k.weights);
  Rng rng(0xD07 + static_cast<uint64_t>(k.weights) * 7 + (bf16 ? 1 : 0));
  size_t misalign = 0;
  std::vector<size_t> depths;
  if (format.quantized()) depths.assign(std::begin(kBlockDepths), std::end(kBlockDepths));
  else depths.assign(std::begin(kDepths), std::end(kDepths));
  const bool tiles = *moe::ukernel::extended_set(k.kernel_set) != '\0';
  std::vector<size_t> row_counts(std::begin(kRows), std::end(kRows)), token_counts(std::begin(kTokens), std::end(kTokens));
  if (tiles) {
    row_counts.assign(std::begin(kTileRows), std::end(kTileRows));
    token_counts.assign(std::begin(kTileTokens), std::end(kTileTokens));
  }
  for (size_t rows : row_counts)
    for (size_t tokens : token_counts)
      for (size_t n : depths) {
        misalign = (misalign + 1) % 5;
        const Matrix m(k.weights, rows, n, rng);
        const TokenRows x(tokens, n, misalign, rng);
        const void* const* xr = bf16 ? x.bf16_rows.data() : x.f32_rows.data();
        const std::string where = std::string(k.name) + " rows=" + std::to_string(rows) +
                                  " tokens=" + std::to_string(tokens) + " n=" + std::to_string(n);
        const std::vector<float> out = call(k, m.panels.as<uint8_t>(), m.panel_bytes, m.padded, rows, xr, tokens, n, where);
        const bool rounds_weights = bf16 && k.weights != moe::WeightFormat::bf16 && k.weights != moe::WeightFormat::mxfp4;
        CHECK_ERROR(worst_error(m, x, bf16, rounds_weights, out, rows, tokens), bf16 ? dot_tolerance(n) + (rounds_weights ? kBf16Tolerance : 0) : dot_tolerance(n),
                    where << " vs float64");
        if (scalar && !bf16) {
          const std::vector<float> s = call(*scalar, m.panels.as<uint8_t>(), m.panel_bytes, m.padded, rows, xr, tokens, n, where);
          double worst = 0;
          for (size_t i = 0; i < s.size(); ++i) worst = std::fmax(worst, std::fabs(s[i] - out[i]));
          CHECK_MSG(worst <= 4 * dot_tolerance(n) * n, where << " vs scalar: " << worst);
        }
        if (exact_decode && f32_kernel && k.weights != moe::WeightFormat::f32) {
          const F32Panels f(m);
          const std::vector<float> d = call(*f32_kernel, f.panels.as<uint8_t>(), f.panel_bytes, m.padded, rows, xr, tokens, n, where);
          for (size_t i = 0; i < d.size(); ++i)
            CHECK_MSG(same_bits(d[i], out[i]), where << ": differs from " << f32_kernel->name << " on the decoded weights at " << i);
        }
        for (size_t t = 0; t < tokens; ++t) {
          const std::vector<float> alone = call(k, m.panels.as<uint8_t>(), m.panel_bytes, m.padded, rows, xr + t, 1, n, where);
          for (size_t r = 0; r < rows; ++r)
            CHECK_MSG(same_bits(alone[r], out[r * tokens + t]), where << ": token " << t << " alone differs at row " << r);
        }
        const std::vector<float> row0 = call(k, m.panels.as<uint8_t>(), m.panel_bytes, m.padded, 1, xr, tokens, n, where);
        for (size_t t = 0; t < tokens; ++t)
          CHECK_MSG(same_bits(row0[t], out[t]), where << ": row 0 alone differs at token " << t);
      }
}

// One test per kernel of the active set.
// Registered at start-up for the set MOE_CPU_ISA forces (or the best one), so a kernel of
// another set is neither run nor counted here: it is tested in the run that forces its set.
const bool kRegistered = [] {
  std::string active;
  try {
    active = moe::cpu_info().kernel;
  } catch (const std::exception&) {
    return false;  // a bad MOE_CPU_ISA: cpu_info_reports_arch_and_kernel fails with its message
  }
  for (const UKernel* k : moe::ukernel::registry()) {
    if (active != k->kernel_set) continue;
    moetest::register_test(std::string("ukernel_") + k->name, [k] {
      // A kernel needing a feature beyond its set's (bf16 dot products) cannot run on a CPU of
      // the set without it (Graviton 2 for neon, A64FX for sve).
      if (!moe::ukernel::runnable(*k)) return moetest::skip(std::string("this CPU lacks ") + k->features);
      check_kernel(*k);
    });
  }
  return true;
}();

}  // namespace

TEST(ukernel_registry_is_ordered_and_complete) {
  const auto& reg = moe::ukernel::registry();
  CHECK(!reg.empty() && std::string(reg.back()->kernel_set) == "scalar");
  bool seen_scalar = false;
  for (const UKernel* k : reg) {
    if (std::string(k->kernel_set) == "scalar") seen_scalar = true;
    else CHECK_MSG(!seen_scalar, k->name << " comes after a scalar kernel");
  }
  // Every format has a decode and a prefill kernel in the active set or scalar, and the
  // choice is what a layer reports.
  for (auto f : {moe::WeightFormat::f32, moe::WeightFormat::bf16, moe::WeightFormat::f16, moe::WeightFormat::mxfp4,
                 moe::WeightFormat::int8}) {
    const moe::ukernel::Choice c = moe::ukernel::choose(f, moe::cpu_info().kernel);
    CHECK(c.decode && c.prefill && c.decode->weights == f && c.prefill->weights == f);
    CHECK_MSG(c.decode->activations == moe::DType::f32, c.decode->name << ": decode takes f32 activations");
    const std::string set = moe::cpu_info().kernel;
    const std::string decode_set = *moe::ukernel::extended_set(set) ? moe::ukernel::extended_set(set) : set;
    CHECK_MSG(set == "scalar" || std::string(c.decode->kernel_set) == decode_set,
              moe::weight_format_name(f) << ": the " << set << " set has no decode kernel (" << c.decode->name << ")");
    // A matrix-unit set brings a tile kernel for every format but f32; the others have none.
    if (decode_set != set) {
      CHECK_MSG((c.tiles != nullptr) == (f != moe::WeightFormat::f32), moe::weight_format_name(f) << ": tiles kernel");
      if (c.tiles) CHECK(std::string(c.tiles->kernel_set) == set && c.tiles->activations == moe::DType::bf16);
    } else {
      CHECK(c.tiles == nullptr);
    }
  }
}
