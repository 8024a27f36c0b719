// The dot-product kernels of the active kernel set (isa/kernel_table.h) against float64 and
// against the scalar table, on odd sizes: rows that do not fill a panel, token counts around
// every tile width (AVX2 3, AVX-512 and NEON 6, SVE 4), depths around every vector and chunk
// width, activation rows misaligned and fenced with NaN (a kernel reading x past n turns a
// result into NaN), outputs pre-filled with NaN and guarded.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "isa/kernel_table.h"
#include "moe_cpu.h"
#include "panel.h"
#include "test_harness.h"

using namespace moetest;

namespace {

const size_t kRows[] = {1, 3, 4, 5, 9};
const size_t kTokens[] = {1, 2, 3, 4, 5, 6, 7, 13};
const size_t kDepths[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 100, 257};
constexpr size_t kFence = 8;  // NaN elements before and after each activation row

// Error bound of an n-term f32 dot product, relative to the sum of |products| (the condition
// of the sum, so cancellation cannot make a correct kernel fail): n roundings of at most one
// ulp (BFDOT rounds to odd), times 2 for the products and the final reduction.
double dot_tolerance(size_t n) { return static_cast<double>(n + 8) * std::ldexp(1.0, -22); }

template <typename T>
T from_f32(float v);
template <>
float from_f32<float>(float v) { return v; }
template <>
uint16_t from_f32<uint16_t>(float v) { return moe::f32_to_bf16(v); }

double to_f64(float v) { return v; }
double to_f64(uint16_t v) { return bf16_bits_to_f32(v); }

template <typename T>
T nan_of();
template <>
float nan_of<float>() { return quiet_nan(); }
template <>
uint16_t nan_of<uint16_t>() { return kBf16QuietNan; }

// A [rows][n] matrix in panels (zero padding, as pack.cpp makes them) and its values.
template <typename W>
struct PanelMatrix {
  moe::PanelShape shape;
  std::vector<W> values, panels;
  PanelMatrix(size_t rows, size_t n, Rng& rng) : shape{rows, n}, values(rows * n) {
    panels.assign(shape.elements(), from_f32<W>(0.0f));
    for (size_t r = 0; r < rows; ++r)
      for (size_t k = 0; k < n; ++k) {
        values[r * n + k] = from_f32<W>(rng.uniform(-1, 1));
        panels[shape.index(r, k)] = values[r * n + k];
      }
  }
};

// Token rows of n values, each in its own NaN-fenced slice, starting `misalign` elements off.
template <typename X>
struct TokenRows {
  std::vector<X> storage;
  std::vector<const X*> rows;
  TokenRows(size_t tokens, size_t n, size_t misalign, Rng& rng) {
    const size_t stride = n + 2 * kFence + misalign;
    storage.assign(tokens * stride, nan_of<X>());
    for (size_t t = 0; t < tokens; ++t) {
      X* row = storage.data() + t * stride + kFence + misalign;
      for (size_t k = 0; k < n; ++k) row[k] = from_f32<X>(rng.uniform(-1, 1));
    }
    // Filled first, pointed at after: storage no longer moves.
    for (size_t t = 0; t < tokens; ++t) rows.push_back(storage.data() + t * stride + kFence + misalign);
  }
};

// Exact sums (float64 holds every product exactly) and the sums of |products|.
struct Reference {
  std::vector<double> sum, magnitude;
};

template <typename W, typename X>
Reference reference(const PanelMatrix<W>& w, const TokenRows<X>& x, size_t n) {
  const size_t rows = w.shape.rows, tokens = x.rows.size();
  Reference ref{std::vector<double>(rows * tokens), std::vector<double>(rows * tokens)};
  for (size_t r = 0; r < rows; ++r)
    for (size_t t = 0; t < tokens; ++t) {
      double s = 0, m = 0;
      for (size_t k = 0; k < n; ++k) {
        const double p = to_f64(w.values[r * n + k]) * to_f64(x.rows[t][k]);
        s += p;
        m += std::fabs(p);
      }
      ref.sum[r * tokens + t] = s;
      ref.magnitude[r * tokens + t] = m;
    }
  return ref;
}

// Largest |out - expected| / magnitude; NaN in out gives +inf.
double worst_error(const std::vector<double>& expected, const std::vector<double>& magnitude,
                   const std::vector<float>& out) {
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double e = std::fabs(out[i] - expected[i]) / (magnitude[i] > 0 ? magnitude[i] : 1.0);
    worst = std::isnan(e) ? INFINITY : std::fmax(worst, e);
  }
  return worst;
}

// fn on a NaN-filled output with a guard after rows * tokens; the guard is checked here.
template <typename W, typename X>
std::vector<float> call(moe::isa::DotFn<W, X> fn, const PanelMatrix<W>& w, const X* const* x,
                        size_t rows, size_t tokens, size_t n, const std::string& where) {
  std::vector<float> out(rows * tokens + kFence, quiet_nan());
  fn(w.panels.data(), w.shape.padded_depth(), rows, x, tokens, n, out.data());
  for (size_t i = rows * tokens; i < out.size(); ++i)
    CHECK_MSG(std::isnan(out[i]), "wrote past out: " << where);
  out.resize(rows * tokens);
  return out;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The sweep for one kernel of the active table and the same kernel of the scalar table:
//  - every output within dot_tolerance of float64, and of the scalar kernel;
//  - column t equals, bit for bit, the same token computed alone, and row 0 of a panel the
//    same row computed alone (the sum order depends on neither tile nor batch).
template <typename W, typename X>
void check_kernel(moe::isa::DotFn<W, X> moe::isa::KernelTable::*kernel, const char* name) {
  const moe::isa::KernelTable& active = moe::isa::active_table();
  const moe::isa::DotFn<W, X> fn = active.*kernel, scalar = moe::isa::scalar_table().*kernel;
  if (!fn) return;  // this kernel set has no such kernel (e.g. no native bf16 dot products)
  Rng rng(0xD07 + sizeof(W) * 3 + sizeof(X));
  size_t misalign = 0;
  for (size_t rows : kRows)
    for (size_t tokens : kTokens)
      for (size_t n : kDepths) {
        misalign = (misalign + 1) % 5;
        const PanelMatrix<W> w(rows, n, rng);
        const TokenRows<X> x(tokens, n, misalign, rng);
        const std::string where = std::string(active.name) + " " + name + " rows=" +
                                  std::to_string(rows) + " tokens=" + std::to_string(tokens) +
                                  " n=" + std::to_string(n);
        const std::vector<float> out = call(fn, w, x.rows.data(), rows, tokens, n, where);
        const Reference ref = reference(w, x, n);
        CHECK_ERROR(worst_error(ref.sum, ref.magnitude, out), dot_tolerance(n), where << " vs float64");
        if (scalar) {
          const std::vector<float> s = call(scalar, w, x.rows.data(), rows, tokens, n, where);
          CHECK_ERROR(worst_error(widen(s), ref.magnitude, out), 2 * dot_tolerance(n),
                      where << " vs scalar");
        }
        for (size_t t = 0; t < tokens; ++t) {
          const std::vector<float> alone = call(fn, w, x.rows.data() + t, rows, 1, n, where);
          for (size_t r = 0; r < rows; ++r)
            CHECK_MSG(same_bits(alone[r], out[r * tokens + t]),
                      where << ": token " << t << " alone differs at row " << r);
        }
        const std::vector<float> row0 = call(fn, w, x.rows.data(), 1, tokens, n, where);
        for (size_t t = 0; t < tokens; ++t)
          CHECK_MSG(same_bits(row0[t], out[t]), where << ": row 0 alone differs at token " << t);
      }
}

}  // namespace

TEST(dot_active_table_is_the_kernel_set) {
  CHECK_MSG(std::string(moe::isa::active_table().name) == moe::cpu_info().kernel,
            "active_table() is " << moe::isa::active_table().name << ", kernel set "
                                 << moe::cpu_info().kernel);
  CHECK(moe::isa::active_table().dot_f32_f32 && moe::isa::active_table().dot_bf16_f32);
  // Native bf16 dot products exactly where the CPU has the instructions.
  const moe::CpuInfo& info = moe::cpu_info();
  auto has = [&](const char* f) {
    for (const std::string& g : info.features) if (g == f) return true;
    return false;
  };
  const bool native = (info.kernel == "avx512" && has("avx512bf16")) ||
                      (info.kernel == "neon" && has("bf16")) || (info.kernel == "sve" && has("svebf16"));
  CHECK_MSG((moe::isa::active_table().dot_bf16_bf16 != nullptr) == native,
            info.kernel << ": dot_bf16_bf16 is " << (native ? "missing" : "set without the CPU feature"));
}

TEST(dot_f32_f32_odd_sizes) { check_kernel(&moe::isa::KernelTable::dot_f32_f32, "dot_f32_f32"); }
TEST(dot_bf16_f32_odd_sizes) { check_kernel(&moe::isa::KernelTable::dot_bf16_f32, "dot_bf16_f32"); }
TEST(dot_bf16_bf16_odd_sizes) {
  check_kernel(&moe::isa::KernelTable::dot_bf16_bf16, "dot_bf16_bf16");
}
