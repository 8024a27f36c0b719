// Gated activations (activation.cpp) against the float64 reference of docs/spec.md "Gated
// activations": every kind x both layouts x f32 and bf16, odd sizes, clamps, NaN.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"
#include "test_reference.h"

using namespace moetest;

namespace {

constexpr size_t kGuard = 7;  // output elements after [T, I] that must stay NaN-sentinel

// Channel values (gate, up) laid out as [T, 2I] in `layout`.
std::vector<float> pack_channels(const std::vector<float>& gate, const std::vector<float>& up,
                                 size_t T, size_t I, moe::W13Layout layout) {
  std::vector<float> in(T * 2 * I);
  for (size_t t = 0; t < T; ++t)
    for (size_t j = 0; j < I; ++j) {
      const bool inter = layout == moe::W13Layout::interleaved;
      in[t * 2 * I + (inter ? 2 * j : j)] = gate[t * I + j];
      in[t * 2 * I + (inter ? 2 * j + 1 : I + j)] = up[t * I + j];
    }
  return in;
}

// Runs the f32 or bf16 kernel on channel values, `offset` elements into the input and output
// buffers; returns the output widened to f32 (T*I entries, pre-filled with NaN) and checks the
// elements around it were not written.
std::vector<float> run_kernel(const moe::ActivationParams& p, moe::W13Layout layout, bool bf16,
                              const std::vector<float>& gate, const std::vector<float>& up,
                              size_t T, size_t I, size_t offset, const std::string& where) {
  const std::vector<float> in = pack_channels(gate, up, T, I, layout);
  const size_t n = T * I;
  std::vector<float> result(n);
  if (!bf16) {
    std::vector<float> src(offset + in.size());
    std::copy(in.begin(), in.end(), src.begin() + offset);
    std::vector<float> out(offset + n + kGuard, quiet_nan());
    moe::gated_activation_f32(p, layout, src.data() + offset, out.data() + offset, T, I);
    for (size_t i = 0; i < kGuard; ++i)
      CHECK_MSG(std::isnan(out[offset + n + i]), "wrote past the output " << where);
    if (offset) CHECK_MSG(std::isnan(out[0]), "wrote before the output " << where);
    std::copy(out.begin() + offset, out.begin() + offset + n, result.begin());
  } else {
    std::vector<uint16_t> src(offset + in.size());
    for (size_t i = 0; i < in.size(); ++i) src[offset + i] = moe::f32_to_bf16(in[i]);
    std::vector<uint16_t> out(offset + n + kGuard, kBf16QuietNan);
    moe::gated_activation_bf16(p, layout, src.data() + offset, out.data() + offset, T, I);
    for (size_t i = 0; i < kGuard; ++i)
      CHECK_MSG(out[offset + n + i] == kBf16QuietNan, "wrote past the output " << where);
    if (offset) CHECK_MSG(out[0] == kBf16QuietNan, "wrote before the output " << where);
    for (size_t i = 0; i < n; ++i) result[i] = bf16_bits_to_f32(out[offset + i]);
  }
  return result;
}

std::string describe(const moe::ActivationParams& p, moe::W13Layout layout, bool bf16, size_t T,
                     size_t I) {
  std::ostringstream os;
  os << activation_name(p.kind) << " alpha=" << p.swiglu_alpha << " limit=" << p.swiglu_limit
     << (layout == moe::W13Layout::interleaved ? " interleaved" : " halves")
     << (bf16 ? " bf16" : " f32") << " T=" << T << " I=" << I;
  return os.str();
}

// Parameter sets: the defaults and two custom (alpha, limit). For the other kinds alpha and
// limit must be ignored.
std::vector<moe::ActivationParams> params_for(moe::Activation kind) {
  std::vector<moe::ActivationParams> ps(3);
  ps[0].kind = ps[1].kind = ps[2].kind = kind;
  ps[1].swiglu_alpha = 1.0f, ps[1].swiglu_limit = 3.0f;
  ps[2].swiglu_alpha = 2.5f, ps[2].swiglu_limit = 10.0f;
  return ps;
}

// Random channels in [-12, 12] (beyond every clamp) against the reference; the same channels
// fed in both layouts give bitwise identical outputs; the scalar function matches too.
void check_random_sweep(moe::Activation kind, bool bf16) {
  Rng rng(0xAC7 + static_cast<uint64_t>(kind) * 2 + bf16);
  const double tol = bf16 ? kTolBf16 : kTolF32;
  for (const moe::ActivationParams& p : params_for(kind))
    for (size_t T : {1, 3})
      for (size_t I : {1, 3, 17, 33, 4097}) {
        std::vector<float> gate(T * I), up(T * I);
        // Tiny tensors: the metric divides by max|ref|, and gelu's 1 + erf(g/sqrt2) at g << 0
        // cancels to 0 in fp32 (the SPEC formula, not a kernel error), so the first channel is
        // redrawn until its output is not tiny; the others span all of [-12, 12].
        for (size_t i = 0; i < T * I; ++i) do {
            gate[i] = rng.uniform(-12.0f, 12.0f);
            up[i] = rng.uniform(-12.0f, 12.0f);
            if (bf16) gate[i] = round_bf16(gate[i]), up[i] = round_bf16(up[i]);
          } while (i == 0 && std::fabs(ref_activation(p, gate[0], up[0])) < 1.0);
        std::vector<double> ref(T * I);
        for (size_t i = 0; i < T * I; ++i) ref[i] = ref_activation(p, gate[i], up[i]);
        const size_t offset = (T + I) % 3;  // aligned and misaligned starts
        const std::vector<float> halves =
            run_kernel(p, moe::W13Layout::halves, bf16, gate, up, T, I, offset,
                       describe(p, moe::W13Layout::halves, bf16, T, I));
        const std::vector<float> inter =
            run_kernel(p, moe::W13Layout::interleaved, bf16, gate, up, T, I, offset,
                       describe(p, moe::W13Layout::interleaved, bf16, T, I));
        CHECK_ERROR(relative_error(ref, halves.data()), tol,
                    describe(p, moe::W13Layout::halves, bf16, T, I));
        CHECK_ERROR(relative_error(ref, inter.data()), tol,
                    describe(p, moe::W13Layout::interleaved, bf16, T, I));
        CHECK_MSG(std::memcmp(halves.data(), inter.data(), halves.size() * sizeof(float)) == 0,
                  "the same channels in both layouts gave different outputs: "
                      << describe(p, moe::W13Layout::halves, bf16, T, I));
        if (!bf16) {
          std::vector<float> scalar(T * I);
          for (size_t i = 0; i < T * I; ++i) scalar[i] = moe::gated_activation(p, gate[i], up[i]);
          CHECK_ERROR(relative_error(ref, scalar.data()), kTolF32,
                      "scalar gated_activation, " << describe(p, moe::W13Layout::halves, false, T, I));
        }
      }
}

}  // namespace

static const bool kRandomSweepRegistered = [] {
  for (moe::Activation kind : kAllActivations)
    for (bool bf16 : {false, true})
      register_test(std::string("activation_random_") + activation_name(kind) +
                        (bf16 ? "_bf16" : "_f32"),
                    [=] { check_random_sweep(kind, bf16); });
  return true;
}();

// One channel value repeated over a [3, 33] tensor: the contract metric then bounds the
// relative error of that value, so the clamps show even where the output is tiny
// (swigluoai gate -12 is not clamped from below: a lower clamp at -7 would be 3000x larger).
TEST(activation_hand_picked_channels) {
  struct Point {
    moe::Activation kind;
    float alpha, limit, g, u;
  };
  const moe::Activation S = moe::Activation::swigluoai;
  std::vector<Point> points = {
      {S, 1.702f, 7.0f, -12.0f, 0.5f},  // gate below -limit: unchanged
      {S, 1.702f, 7.0f, 9.0f, 0.5f},    // gate above limit: 7
      {S, 1.702f, 7.0f, 7.0f, -7.0f},   // exactly at the limits
      {S, 1.702f, 7.0f, 2.0f, 9.0f},    // up above limit: 7
      {S, 1.702f, 7.0f, 2.0f, -9.0f},   // up below -limit: -7, (u' + 1) = -6
      {S, 1.0f, 3.0f, 5.0f, -4.0f},     // custom alpha and limit
      {S, 2.5f, 10.0f, 11.0f, 10.5f},
      {S, 2.5f, 10.0f, -0.75f, 0.25f},
  };
  for (moe::Activation kind : kAllActivations)
    for (float g : {-1.0f, 0.25f, 2.0f, 6.0f})
      for (float u : {-1.5f, 0.5f, 3.0f}) points.push_back({kind, 1.702f, 7.0f, g, u});
  const size_t T = 3, I = 33;
  for (const Point& pt : points) {
    moe::ActivationParams p;
    p.kind = pt.kind, p.swiglu_alpha = pt.alpha, p.swiglu_limit = pt.limit;
    const std::vector<float> gate(T * I, pt.g), up(T * I, pt.u);
    const std::vector<double> ref(T * I, ref_activation(p, pt.g, pt.u));
    for (moe::W13Layout layout : {moe::W13Layout::halves, moe::W13Layout::interleaved}) {
      const std::string where = describe(p, layout, false, T, I) + " g=" + std::to_string(pt.g) +
                                " u=" + std::to_string(pt.u);
      const std::vector<float> out = run_kernel(p, layout, false, gate, up, T, I, 0, where);
      CHECK_ERROR(relative_error(ref, out.data()), kTolF32, where);
    }
    const float scalar = moe::gated_activation(p, pt.g, pt.u);
    CHECK_ERROR(relative_error({ref[0]}, &scalar), kTolF32,
                "scalar " << activation_name(p.kind) << " g=" << pt.g << " u=" << pt.u);
  }
}

// NaN in the gate or the up value gives NaN, also where a clamp applies to the other value.
TEST(activation_nan_propagates) {
  const size_t T = 2, I = 33;
  const float nan = quiet_nan();
  for (moe::Activation kind : kAllActivations)
    for (bool bf16 : {false, true})
      for (moe::W13Layout layout : {moe::W13Layout::halves, moe::W13Layout::interleaved}) {
        moe::ActivationParams p;
        p.kind = kind;
        std::vector<float> gate(T * I, 1.5f), up(T * I, -2.0f);
        std::vector<bool> expect_nan(T * I, false);
        const size_t nan_gate[] = {0, 5, 16, 40}, nan_up[] = {1, 17, 32, 65};
        for (size_t i : nan_gate) gate[i] = nan, expect_nan[i] = true;
        for (size_t i : nan_up) up[i] = nan, expect_nan[i] = true;
        up[5] = 20.0f, gate[17] = 20.0f, up[40] = -20.0f, gate[65] = -20.0f;  // clamped partners
        const std::string where = describe(p, layout, bf16, T, I);
        const std::vector<float> out = run_kernel(p, layout, bf16, gate, up, T, I, 0, where);
        for (size_t i = 0; i < T * I; ++i)
          CHECK_MSG(std::isnan(out[i]) == expect_nan[i],
                    "entry " << i << " is " << out[i] << ", expected "
                             << (expect_nan[i] ? "NaN" : "a number") << ": " << where);
        if (!bf16)
          for (size_t i : {0, 5, 1, 17})
            CHECK_MSG(std::isnan(moe::gated_activation(p, gate[i], up[i])),
                      "scalar gated_activation(" << gate[i] << ", " << up[i] << ") is not NaN, "
                                                 << activation_name(kind));
      }
}
