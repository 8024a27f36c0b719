// The elementwise tables (isa/elementwise_table.h) of every kernel set this CPU can run, called
// directly: vector exp / sigmoid / tanh / erf against float64 math over a dense sweep and
// special values; gated activations and the W13 word split / zip against the scalar table, at
// odd sizes and misaligned pointers with NaN-prefilled outputs and guard elements; NaN and
// clamps.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ukernel/elementwise_table.h"
#include "moe_cpu.h"
#include "test_harness.h"
#include "test_reference.h"

using namespace moetest;
using moe::isa::ElementwiseTable;

namespace {

// Max errors of the vector math against float64, in ulp of the f32-rounded true value (below
// FLT_MIN the ulp is the smallest subnormal). Measured over math_points(), AVX2 and AVX-512
// alike (the scalar table, glibc, in brackets): exp 0.99 ulp (0.50), sigmoid 2.18 (2.30),
// tanh 1.23 (2.07), erf 1.08 ulp and 6.5e-8 absolute (0.78, 4.7e-8).
constexpr double kExpMaxUlp = 1.5;
constexpr double kSigmoidMaxUlp = 2.5;
constexpr double kTanhMaxUlp = 2.5;
constexpr double kErfMaxUlp = 1.5;
constexpr double kErfMaxAbs = 1e-7;
// Gated activations against the scalar table, as the error of the gate factor F in [0, 1]
// (out = g F u; swigluoai: g' F (u' + 1)): |out - ref| / |g u|. Measured: silu 1.5e-7,
// swigluoai 1.4e-7, gelu 1.3e-7, gelu_tanh 1.4e-7.
constexpr double kGateFactorMaxError = 2.5e-7;

constexpr size_t kSizes[] = {1, 3, 17, 33, 4097};
constexpr size_t kGuard = 4;
constexpr uint32_t kF32Sentinel = 0x7fc0beefu;  // a NaN no kernel produces: guards must keep it
constexpr uint16_t kBf16Sentinel = 0x7fd5u;

// The elementwise table a kernel set uses: its own (the sve set's holds the NEON functions),
// the scalar one for the scalar set.
const ElementwiseTable* table_for(const std::string& kernel_set) {
#if defined(__x86_64__) || defined(_M_X64)
  if (kernel_set == "avx2") return &moe::isa::avx2_elementwise();
  if (kernel_set == "avx512") return &moe::isa::avx512_elementwise();
  if (kernel_set == "amx") return &moe::isa::avx512_elementwise();  // amx extends avx512
#endif
#if defined(__aarch64__) && !defined(_WIN32)
  if (kernel_set == "neon") return &moe::isa::neon_elementwise();
#endif
#if defined(__aarch64__) && defined(__linux__)
  if (kernel_set == "sve") return &moe::isa::sve_elementwise();
#endif
  return &moe::isa::scalar_elementwise();
}

// The tables of the kernel sets dispatch.cpp reports as runnable on this CPU, each once.
std::vector<const ElementwiseTable*> runnable_tables() {
  std::vector<const ElementwiseTable*> tables;
  for (const std::string& name : moe::cpu_info().kernels) {
    const ElementwiseTable* t = table_for(name);
    bool seen = false;
    for (const ElementwiseTable* u : tables) seen = seen || u == t;
    if (!seen) tables.push_back(t);
  }
  return tables;
}

// ---- vector math ----------------------------------------------------------------------------

double ulp_of(double ref) {
  const float f = static_cast<float>(ref);
  if (std::isinf(f)) return std::ldexp(1.0, 128 - 24);
  if (std::fabs(f) < FLT_MIN) return std::ldexp(1.0, -149);
  return std::ldexp(1.0, std::ilogb(f) - 23);
}

std::vector<float> math_points() {
  std::vector<float> x;
  const auto sweep = [&](double from, double to, size_t count) {
    for (size_t i = 0; i < count; ++i)
      x.push_back(static_cast<float>(from + (to - from) * i / (count - 1)));
  };
  sweep(-20.0, 20.0, 1000000);
  sweep(-110.0, 90.0, 100000);  // exp's whole range: overflow, subnormal results, underflow
  const float inf = INFINITY;
  for (float s : {0.0f, FLT_MIN, 1e-30f, 1e-7f, 0.5f, 0.921875f, 1.0f, 3.9f, 4.0f, 7.0f, 87.33f,
                  88.72f, 88.7228f, 88.73f, 89.0f, 103.9f, 104.0f, 200.0f, FLT_MAX, inf}) {
    x.push_back(s);
    x.push_back(-s);
    x.push_back(std::nextafter(s, inf));
    x.push_back(-std::nextafter(s, inf));
  }
  x.push_back(std::numeric_limits<float>::denorm_min());
  x.push_back(quiet_nan());
  x.push_back(-quiet_nan());
  return x;
}

double ref_exp(double x) { return std::exp(x); }
double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double ref_tanh(double x) { return std::tanh(x); }
double ref_erf(double x) { return std::erf(x); }

struct MathError {
  double max_ulp = 0, max_abs = 0;
  std::string worst;
};

// Checks NaN-ness, infinities and signed zeros exactly; returns the max error of the rest.
MathError measure(const char* table, const char* name, moe::isa::UnaryF32Fn fn,
                  const std::vector<float>& x, double (*ref)(double)) {
  std::vector<float> out(x.size() + 1, f32_from_bits(kF32Sentinel));
  fn(x.data(), out.data(), x.size());
  CHECK_MSG(f32_bits(out[x.size()]) == kF32Sentinel, table << " " << name << " wrote past the end");
  MathError e;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = ref(static_cast<double>(x[i]));
    if (std::isnan(r) || std::isnan(out[i]) || std::isinf(static_cast<float>(r)) || r == 0.0) {
      const float rf = static_cast<float>(r);
      const bool same = std::isnan(r) ? std::isnan(out[i])
                                      : (out[i] == rf && std::signbit(out[i]) == std::signbit(rf));
      CHECK_MSG(same, table << " " << name << "(" << x[i] << ") = " << out[i] << ", expected "
                            << r);
      continue;
    }
    const double diff = std::fabs(out[i] - r), ulps = diff / ulp_of(r);
    if (ulps > e.max_ulp) {
      e.max_ulp = ulps;
      std::ostringstream os;
      os << name << "(" << x[i] << ") = " << out[i] << " vs " << r;
      e.worst = os.str();
    }
    e.max_abs = std::fmax(e.max_abs, diff);
  }
  return e;
}

// ---- gated activations ----------------------------------------------------------------------

std::vector<moe::ActivationParams> all_params() {
  std::vector<moe::ActivationParams> ps;
  for (moe::Activation kind : {moe::Activation::swigluoai, moe::Activation::silu,
                               moe::Activation::gelu, moe::Activation::gelu_tanh}) {
    moe::ActivationParams p;
    p.kind = kind;
    ps.push_back(p);
  }
  moe::ActivationParams custom;  // swigluoai with non-default alpha and limit
  custom.kind = moe::Activation::swigluoai;
  custom.swiglu_alpha = 1.25f;
  custom.swiglu_limit = 3.5f;
  ps.push_back(custom);
  return ps;
}

std::string describe(const moe::ActivationParams& p) {
  std::ostringstream os;
  os << activation_name(p.kind);
  if (p.kind == moe::Activation::swigluoai)
    os << "(alpha " << p.swiglu_alpha << ", limit " << p.swiglu_limit << ")";
  return os.str();
}

// |g u| (|g' (u' + 1)| for swigluoai): out / scale is the gate factor in [0, 1].
double gate_scale(const moe::ActivationParams& p, float g, float u) {
  double gd = g, ud = u;
  if (p.kind == moe::Activation::swigluoai) {
    const double limit = p.swiglu_limit;
    gd = gd > limit ? limit : gd;
    ud = (ud > limit ? limit : (ud < -limit ? -limit : ud)) + 1.0;
  }
  return std::fabs(gd * ud);
}

// Gate and up values: uniform over the interesting range, with specials every few elements.
void make_inputs(Rng& rng, size_t n, const moe::ActivationParams& p, std::vector<float>& g,
                 std::vector<float>& u) {
  const float limit = p.swiglu_limit;
  const float specials[] = {0.0f, -0.0f, limit, -limit, std::nextafter(limit, 100.0f), 25.0f,
                            -25.0f, INFINITY, -INFINITY, quiet_nan()};
  g.resize(n);
  u.resize(n);
  for (size_t i = 0; i < n; ++i) {
    g[i] = rng.uniform(-12.0f, 12.0f);
    u[i] = rng.uniform(-10.0f, 10.0f);
    if (rng.below(7) == 0) g[i] = specials[rng.below(10)];
    if (rng.below(7) == 0) u[i] = specials[rng.below(10)];
  }
}

// Runs the gated kernel of `t` (halves or pairs layout) on g, u placed `offset` elements into
// their buffer; the output is NaN-prefilled with a sentinel guard after it. Returns the body.
template <typename T>
std::vector<T> run_gated(const ElementwiseTable& t, const moe::ActivationParams& p, bool pairs,
                         const std::vector<T>& g, const std::vector<T>& u, size_t offset,
                         const std::string& where);

template <>
std::vector<float> run_gated(const ElementwiseTable& t, const moe::ActivationParams& p, bool pairs,
                             const std::vector<float>& g, const std::vector<float>& u,
                             size_t offset, const std::string& where) {
  const size_t n = g.size();
  std::vector<float> in(offset + 2 * n), out(offset + n + kGuard, quiet_nan());
  for (size_t j = 0; j < n; ++j) {
    in[offset + (pairs ? 2 * j : j)] = g[j];
    in[offset + (pairs ? 2 * j + 1 : n + j)] = u[j];
  }
  for (size_t i = 0; i < kGuard; ++i) out[offset + n + i] = f32_from_bits(kF32Sentinel);
  const float* src = in.data() + offset;
  if (pairs) t.gated_pairs_f32(p, src, out.data() + offset, n);
  else t.gated_f32(p, src, src + n, out.data() + offset, n);
  bool guard = true;
  for (size_t i = 0; i < kGuard; ++i)
    guard = guard && f32_bits(out[offset + n + i]) == kF32Sentinel;
  CHECK_MSG(guard, "wrote past the end: " << where);
  return std::vector<float>(out.begin() + offset, out.begin() + offset + n);
}

template <>
std::vector<uint16_t> run_gated(const ElementwiseTable& t, const moe::ActivationParams& p,
                                bool pairs, const std::vector<uint16_t>& g,
                                const std::vector<uint16_t>& u, size_t offset,
                                const std::string& where) {
  const size_t n = g.size();
  std::vector<uint16_t> in(offset + 2 * n), out(offset + n + kGuard, kBf16QuietNan);
  for (size_t j = 0; j < n; ++j) {
    in[offset + (pairs ? 2 * j : j)] = g[j];
    in[offset + (pairs ? 2 * j + 1 : n + j)] = u[j];
  }
  for (size_t i = 0; i < kGuard; ++i) out[offset + n + i] = kBf16Sentinel;
  const uint16_t* src = in.data() + offset;
  if (pairs) t.gated_pairs_bf16(p, src, out.data() + offset, n);
  else t.gated_bf16(p, src, src + n, out.data() + offset, n);
  bool guard = true;
  for (size_t i = 0; i < kGuard; ++i) guard = guard && out[offset + n + i] == kBf16Sentinel;
  CHECK_MSG(guard, "wrote past the end: " << where);
  return std::vector<uint16_t>(out.begin() + offset, out.begin() + offset + n);
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = moe::f32_to_bf16(v[i]);
  return b;
}

// f32 results against the scalar table: NaN exactly where it has NaN, infinities and zero
// scales exactly, else within the gate-factor error.
void compare_f32(const moe::ActivationParams& p, const std::vector<float>& g,
                   const std::vector<float>& u, const std::vector<float>& ref,
                   const std::vector<float>& out, const std::string& where) {
  for (size_t j = 0; j < ref.size(); ++j) {
    const double scale = gate_scale(p, g[j], u[j]);
    if (std::isnan(ref[j]) || std::isnan(out[j]) || std::isinf(ref[j]) || !std::isfinite(scale) ||
        scale == 0.0) {
      const bool same = std::isnan(ref[j]) ? std::isnan(out[j]) : out[j] == ref[j];
      CHECK_MSG(same, where << ": act(" << g[j] << ", " << u[j] << ") = " << out[j]
                            << ", scalar " << ref[j]);
      continue;
    }
    const double error = std::fabs(static_cast<double>(out[j]) - ref[j]) / scale;
    CHECK_MSG(error <= kGateFactorMaxError, where << ": act(" << g[j] << ", " << u[j] << ") = "
                                                  << out[j] << ", scalar " << ref[j]);
  }
}

// bf16 results: NaN where the scalar table has NaN, else at most one bf16 step apart (the f32
// values may straddle a rounding boundary) or within the f32 gate-factor error (1 + tanh(y)
// cancels for y << 0: the tiny results differ in relative terms).
void compare_bf16(const moe::ActivationParams& p, const std::vector<uint16_t>& g,
                  const std::vector<uint16_t>& u, const std::vector<uint16_t>& ref,
                  const std::vector<uint16_t>& out, const std::string& where) {
  // Position on the number line in bf16 steps (-0 and +0 both 0).
  const auto steps = [](uint16_t b) {
    return (b & 0x8000) ? -static_cast<int>(b & 0x7fff) : static_cast<int>(b);
  };
  for (size_t j = 0; j < ref.size(); ++j) {
    const float gf = bf16_bits_to_f32(g[j]), uf = bf16_bits_to_f32(u[j]);
    const double diff = std::fabs(static_cast<double>(bf16_bits_to_f32(out[j])) -
                                  bf16_bits_to_f32(ref[j]));
    const bool close = std::abs(steps(out[j]) - steps(ref[j])) <= 1 ||
                       diff <= kGateFactorMaxError * gate_scale(p, gf, uf);
    const bool ok = bf16_is_nan(ref[j]) ? bf16_is_nan(out[j]) : !bf16_is_nan(out[j]) && close;
    CHECK_MSG(ok, where << ": act(" << gf << ", " << uf << ") = 0x" << std::hex << out[j]
                        << ", scalar 0x" << ref[j] << std::dec);
  }
}

// One case: both layouts and both dtypes of `t` against the scalar table.
void check_gated(const ElementwiseTable& t, const moe::ActivationParams& p,
                   const std::vector<float>& g, const std::vector<float>& u, size_t offset) {
  const ElementwiseTable& scalar = moe::isa::scalar_elementwise();
  const std::vector<uint16_t> gb = to_bf16(g), ub = to_bf16(u);
  for (bool pairs : {false, true}) {
    std::ostringstream os;
    os << t.name << " " << describe(p) << (pairs ? " pairs" : " halves") << " n=" << g.size()
       << " offset=" << offset;
    const std::string where = os.str();
    const std::vector<float> ref = run_gated(scalar, p, pairs, g, u, offset, where + " (scalar)");
    const std::vector<float> out = run_gated(t, p, pairs, g, u, offset, where);
    compare_f32(p, g, u, ref, out, where + " f32");
    const std::vector<uint16_t> ref_b =
        run_gated(scalar, p, pairs, gb, ub, offset, where + " (scalar)");
    const std::vector<uint16_t> out_b = run_gated(t, p, pairs, gb, ub, offset, where);
    compare_bf16(p, gb, ub, ref_b, out_b, where + " bf16");
  }
}

// ---- W13 word split / zip -------------------------------------------------------------------

constexpr unsigned char kGuardByte = 0xa5;
constexpr size_t kGuardBytes = 64;  // a whole vector of the widest ISA on each side

unsigned char pattern_byte(size_t i) { return static_cast<unsigned char>(i * 131 + 7); }

// Bytes with guard bytes on both sides; data() is `offset` bytes past the front guard.
struct Bytes {
  std::vector<unsigned char> storage;
  size_t offset, size;
  Bytes(size_t n, size_t misalign)
      : storage(n + 2 * kGuardBytes + misalign, kGuardByte),
        offset(kGuardBytes + misalign),
        size(n) {}
  unsigned char* data() { return storage.data() + offset; }
  std::vector<unsigned char> body() const {
    return std::vector<unsigned char>(storage.begin() + offset, storage.begin() + offset + size);
  }
  bool guards_intact() const {
    for (size_t i = 0; i < storage.size(); ++i)
      if ((i < offset || i >= offset + size) && storage[i] != kGuardByte) return false;
    return true;
  }
};

void check_words(const ElementwiseTable& t, size_t w, size_t n, size_t misalign) {
  const moe::isa::SplitFn split =
      w == 2 ? t.deinterleave_16 : w == 4 ? t.deinterleave_32 : t.deinterleave_64;
  const moe::isa::ZipFn zip = w == 2 ? t.interleave_16 : w == 4 ? t.interleave_32 : t.interleave_64;
  std::ostringstream os;
  os << t.name << " " << 8 * w << "-bit words, n=" << n << ", pointers " << misalign
     << " bytes off";
  const std::string where = os.str();

  const size_t half = n * w;
  std::vector<unsigned char> pairs(2 * half), evens(half), odds(half);
  for (size_t i = 0; i < 2 * half; ++i) pairs[i] = pattern_byte(i);
  for (size_t j = 0; j < n; ++j) {
    std::memcpy(&evens[j * w], &pairs[2 * j * w], w);
    std::memcpy(&odds[j * w], &pairs[(2 * j + 1) * w], w);
  }

  // std::copy and std::equal, not memcpy and memcmp: at n = 0 the vectors are empty and their
  // data() may be null, which memcpy and memcmp do not accept even for 0 bytes (UBSan: nonnull).
  Bytes in(2 * half, misalign), e(half, misalign), o(half, misalign);
  std::copy(pairs.begin(), pairs.end(), in.data());
  split(in.data(), e.data(), o.data(), n);
  CHECK_MSG(e.body() == evens && o.body() == odds, "split " << where);
  CHECK_MSG(e.guards_intact() && o.guards_intact() && in.body() == pairs,
            "split touched other bytes " << where);

  Bytes out(2 * half, misalign);
  zip(e.data(), o.data(), out.data(), n);
  CHECK_MSG(out.body() == pairs, "zip " << where);
  CHECK_MSG(out.guards_intact(), "zip wrote outside its output " << where);

  // In place as layout.cpp uses them: evens over the front of the pairs, odds to a buffer;
  // back with the evens in a buffer and the odds in the second half of the output.
  Bytes row(2 * half, misalign), buffer(half, misalign);
  std::copy(pairs.begin(), pairs.end(), row.data());
  split(row.data(), row.data(), buffer.data(), n);
  CHECK_MSG(std::equal(evens.begin(), evens.end(), row.data()) && buffer.body() == odds,
            "split in place " << where);
  std::copy(evens.begin(), evens.end(), buffer.data());
  std::copy(odds.begin(), odds.end(), row.data() + half);
  zip(buffer.data(), row.data() + half, row.data(), n);
  CHECK_MSG(row.body() == pairs, "zip in place " << where);
  CHECK_MSG(row.guards_intact() && buffer.guards_intact(),
            "in place wrote outside the row " << where);
}

// ---- the public layout functions on word-sized blocks (inner 2 and 4) -----------------------

template <typename T>
void check_layout_words(size_t outer, size_t half, size_t inner) {
  const moe::W13Shape shape{outer, half, inner};
  const size_t n = shape.elements();
  std::vector<T> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = static_cast<T>(i * 40503u + 7u);
  const std::vector<T> de_ref = permute_w13(src, outer, half, inner, false);
  const std::vector<T> inter_ref = permute_w13(src, outer, half, inner, true);
  std::ostringstream os;
  os << sizeof(T) << "-byte elements [" << outer << ", 2*" << half << ", " << inner << "], "
     << moe::cpu_info().kernel;
  const std::string where = os.str();

  // One element off the allocation, so word-sized blocks are misaligned for their width.
  std::vector<T> a(n + 1), b(n + 1);
  std::memcpy(a.data() + 1, src.data(), n * sizeof(T));
  moe::deinterleave_w13(a.data() + 1, b.data() + 1, sizeof(T), shape);
  CHECK_MSG(std::vector<T>(b.begin() + 1, b.end()) == de_ref, "deinterleave_w13 " << where);
  moe::interleave_w13(a.data() + 1, b.data() + 1, sizeof(T), shape);
  CHECK_MSG(std::vector<T>(b.begin() + 1, b.end()) == inter_ref, "interleave_w13 " << where);
  moe::deinterleave_w13_in_place(a.data() + 1, sizeof(T), shape);
  CHECK_MSG(std::vector<T>(a.begin() + 1, a.end()) == de_ref,
            "deinterleave_w13_in_place " << where);
  moe::interleave_w13_in_place(a.data() + 1, sizeof(T), shape);
  CHECK_MSG(std::vector<T>(a.begin() + 1, a.end()) == src, "interleave_w13_in_place " << where);
}

}  // namespace

TEST(elementwise_active_table_is_the_kernel_sets) {
  const ElementwiseTable& active = moe::isa::active_elementwise();
  CHECK_MSG(&active == table_for(moe::cpu_info().kernel),
            "active_elementwise() is " << active.name << ", kernel set " << moe::cpu_info().kernel);
}

TEST(elementwise_math_against_float64) {
  const std::vector<float> x = math_points();
  for (const ElementwiseTable* t : runnable_tables()) {
    const MathError e = measure(t->name, "exp", t->exp_f32, x, ref_exp);
    CHECK_ERROR(e.max_ulp, kExpMaxUlp, t->name << " exp ulp, worst " << e.worst);
    const MathError s = measure(t->name, "sigmoid", t->sigmoid_f32, x, ref_sigmoid);
    CHECK_ERROR(s.max_ulp, kSigmoidMaxUlp, t->name << " sigmoid ulp, worst " << s.worst);
    const MathError h = measure(t->name, "tanh", t->tanh_f32, x, ref_tanh);
    CHECK_ERROR(h.max_ulp, kTanhMaxUlp, t->name << " tanh ulp, worst " << h.worst);
    const MathError r = measure(t->name, "erf", t->erf_f32, x, ref_erf);
    CHECK_ERROR(r.max_ulp, kErfMaxUlp, t->name << " erf ulp, worst " << r.worst);
    CHECK_ERROR(r.max_abs, kErfMaxAbs, t->name << " erf absolute, worst " << r.worst);
  }
}

TEST(elementwise_math_in_place) {
  std::vector<float> x = {-3.0f, -0.5f, 0.0f, 0.25f, 2.0f, 9.0f, 30.0f, -30.0f, 1.0f};
  for (const ElementwiseTable* t : runnable_tables()) {
    for (moe::isa::UnaryF32Fn fn : {t->exp_f32, t->sigmoid_f32, t->tanh_f32, t->erf_f32}) {
      std::vector<float> separate(x.size()), same = x;
      fn(x.data(), separate.data(), x.size());
      fn(same.data(), same.data(), same.size());
      CHECK_MSG(same == separate, t->name << ": in == out differs from separate buffers");
    }
  }
}

TEST(elementwise_gated_against_scalar) {
  for (const ElementwiseTable* t : runnable_tables()) {
    for (const moe::ActivationParams& p : all_params()) {
      Rng rng(0x5eed0000u + static_cast<uint64_t>(p.kind));
      for (size_t n : kSizes)
        for (size_t offset : {0, 1}) {
          std::vector<float> g, u;
          make_inputs(rng, n, p, g, u);
          check_gated(*t, p, g, u, offset);
        }
    }
  }
}

TEST(elementwise_gated_nan_and_clamps) {
  const float nan = quiet_nan(), inf = INFINITY;
  for (const ElementwiseTable* t : runnable_tables()) {
    for (const moe::ActivationParams& p : all_params()) {
      const float limit = p.swiglu_limit, above = std::nextafter(limit, inf);
      const std::vector<std::pair<float, float>> cases = {
          {nan, 1.0f}, {1.0f, nan}, {nan, nan}, {-nan, 2.0f}, {nan, 100.0f}, {100.0f, nan},
          {inf, 2.0f}, {-inf, 2.0f}, {2.0f, inf}, {2.0f, -inf}, {100.0f, 100.0f},
          {limit, limit}, {above, above}, {-100.0f, -100.0f}, {1.5f, -100.0f}, {1.5f, -limit},
          {1.5f, 100.0f}, {1.5f, limit}, {-10.0f, 1.0f}, {-limit, 1.0f}, {0.0f, 3.0f},
          {-0.0f, 3.0f}, {50.0f, 0.5f}, {-50.0f, 0.5f}};
      // Twice over, so the cases land both in whole vectors and in the partial one at the end.
      std::vector<float> g, u;
      for (int twice = 0; twice < 2; ++twice)
        for (const auto& c : cases) {
          g.push_back(c.first);
          u.push_back(c.second);
        }
      check_gated(*t, p, g, u, 1);
      for (bool pairs : {false, true}) {
        const std::string where =
            std::string(t->name) + " " + describe(p) + (pairs ? " pairs" : " halves");
        const std::vector<float> out = run_gated(*t, p, pairs, g, u, 0, where);
        const std::vector<uint16_t> out_b =
            run_gated(*t, p, pairs, to_bf16(g), to_bf16(u), 0, where);
        for (size_t j = 0; j < g.size(); ++j) {
          if (std::isnan(g[j]) || std::isnan(u[j])) {
            CHECK_MSG(std::isnan(out[j]) && bf16_is_nan(out_b[j]),
                      where << ": act(" << g[j] << ", " << u[j] << ") is not NaN");
          }
        }
        if (p.kind != moe::Activation::swigluoai) continue;
        // Cases by index: 10 (100, 100) == 11 (limit, limit); 14 (1.5, -100) == 15 (1.5, -limit);
        // 16 (1.5, 100) == 17 (1.5, limit); 12 is above the limit; 18 (-10) is not clamped below.
        CHECK_MSG(out[10] == out[11] && out[12] == out[11], where << ": g and u clamp to +limit");
        CHECK_MSG(out[14] == out[15], where << ": u clamps to -limit");
        CHECK_MSG(out[16] == out[17], where << ": u clamps to +limit");
        CHECK_MSG(out[18] != out[19] && out[18] < 0.0f, where << ": g has no lower clamp");
      }
    }
  }
}

TEST(elementwise_words_split_zip) {
  for (const ElementwiseTable* t : runnable_tables())
    for (size_t w : {2, 4, 8})
      for (size_t n : {0, 1, 3, 17, 33, 4097})
        for (size_t misalign : {size_t{0}, size_t{2}, w}) check_words(*t, w, n, misalign);
}

TEST(elementwise_layout_word_blocks) {
  for (size_t outer : {1, 3})
    for (size_t half : {1, 3, 17, 33, 100}) {
      for (size_t inner : {1, 2, 4}) check_layout_words<uint16_t>(outer, half, inner);
      for (size_t inner : {1, 2}) check_layout_words<uint32_t>(outer, half, inner);
    }
}
