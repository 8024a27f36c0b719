// MoeLayer (moe.cpp) against the float64 reference of docs/spec.md "The MoE forward": dtypes x
// layouts x orientation x biases x activations, the interleaved-layout seed bug, determinism
// across thread counts, concurrent calls, bad input.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "format/format.h"
#include "format/pack.h"
#include "moe_cpu.h"
#include "test_harness.h"
#include "test_reference.h"

using namespace moetest;

namespace {

constexpr size_t kGuard = 5;  // output elements after [T, H] that must stay untouched

struct Shape {
  size_t E, H, I, K;
};

// Canonical weights (docs/spec.md form). W13 entries in +-9/sqrt(H) give h a standard deviation of
// about 3 for x in [-1, 1], so swigluoai's clamps at +-7 are reached. Rounded to bf16 when the
// weights are bf16 (biases too: they have the weight dtype).
RefLayer make_ref_layer(const Shape& s, moe::Activation act, bool biases, moe::DType wdtype,
                        Rng& rng) {
  RefLayer L;
  L.E = s.E, L.H = s.H, L.I = s.I;
  L.act.kind = act;
  auto fill = [&](std::vector<float>& v, size_t n, float scale) {
    v.resize(n);
    for (float& x : v) {
      x = rng.uniform(-scale, scale);
      if (wdtype == moe::DType::bf16) x = round_bf16(x);
    }
  };
  fill(L.w13, s.E * 2 * s.I * s.H, 9.0f / std::sqrt(float(s.H)));
  fill(L.w2, s.E * s.H * s.I, 1.0f / std::sqrt(float(s.I)));
  if (biases) {
    fill(L.b13, s.E * 2 * s.I, 1.0f);
    fill(L.b2, s.E * s.H, 0.5f);
  }
  return L;
}

// The caller's arrays for a layer: W13 and its bias permuted to `layout` with the test's own
// index mapping, both weights transposed if asked, stored in the weight dtype.
struct CallerWeights {
  moe::DType dtype;
  std::vector<float> f32[4];      // w13, w2, b13, b2
  std::vector<uint16_t> bf16[4];  // the same as bf16 bit patterns
  bool has_bias;

  CallerWeights(const RefLayer& L, moe::W13Layout layout, bool transposed, moe::DType dt)
      : dtype(dt), has_bias(!L.b13.empty()) {
    const bool inter = layout == moe::W13Layout::interleaved;
    f32[0] = inter ? permute_w13(L.w13, L.E, L.I, L.H, true) : L.w13;
    f32[1] = L.w2;
    if (transposed) {
      f32[0] = transpose_last2(f32[0], L.E, 2 * L.I, L.H);
      f32[1] = transpose_last2(f32[1], L.E, L.H, L.I);
    }
    f32[2] = inter && has_bias ? permute_w13(L.b13, L.E, L.I, 1, true) : L.b13;
    f32[3] = L.b2;
    for (int i = 0; i < 4; ++i) {
      bf16[i].resize(f32[i].size());
      for (size_t j = 0; j < f32[i].size(); ++j) bf16[i][j] = moe::f32_to_bf16(f32[i][j]);
    }
  }
  const void* ptr(int i) const {
    if (i >= 2 && !has_bias) return nullptr;
    return dtype == moe::DType::f32 ? static_cast<const void*>(f32[i].data())
                                    : static_cast<const void*>(bf16[i].data());
  }
  moe::MoeWeights weights() const {
    const moe::WeightFormat f = dtype == moe::DType::f32 ? moe::WeightFormat::f32 : moe::WeightFormat::bf16;
    return {{f, ptr(0), nullptr}, {f, ptr(1), nullptr}, {f, ptr(2), nullptr}, {f, ptr(3), nullptr}};
  }
  // The layer must not keep a reference to these: overwrite them with NaN.
  void poison() {
    for (int i = 0; i < 4; ++i) {
      std::fill(f32[i].begin(), f32[i].end(), quiet_nan());
      std::fill(bf16[i].begin(), bf16[i].end(), kBf16QuietNan);
    }
  }
};

moe::MoeConfig make_config(const Shape& s, moe::Activation act, moe::W13Layout layout,
                           bool transposed, moe::DType wdtype, unsigned threads) {
  moe::MoeConfig c;
  c.num_experts = s.E, c.hidden_size = s.H, c.intermediate_size = s.I, c.top_k = s.K;
  c.activation.kind = act;
  c.w13_layout = layout;
  c.transposed = transposed;
  c.weight_format = wdtype == moe::DType::f32 ? moe::WeightFormat::f32 : moe::WeightFormat::bf16;
  c.threads = threads;
  return c;
}

// Tokens: hidden [T, H] in [-1, 1] (bf16-representable if the activations are bf16), K
// distinct ids and positive weights per token.
struct Tokens {
  size_t T;
  std::vector<float> hidden, weights;
  std::vector<int32_t> ids;
  Tokens(const Shape& s, size_t T_, bool bf16_act, Rng& rng) : T(T_) {
    hidden.resize(T * s.H);
    for (float& x : hidden) x = bf16_act ? round_bf16(rng.uniform(-1, 1)) : rng.uniform(-1, 1);
    for (size_t t = 0; t < T; ++t) {
      std::vector<int32_t> chosen;
      while (chosen.size() < s.K) {
        const int32_t e = static_cast<int32_t>(rng.below(s.E));
        if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
      }
      ids.insert(ids.end(), chosen.begin(), chosen.end());
      for (size_t k = 0; k < s.K; ++k) weights.push_back(rng.uniform(0.05f, 1.0f));
    }
  }
  std::vector<double> reference(const RefLayer& L, size_t K, bool bf16_act) const {
    const std::vector<double> x(hidden.begin(), hidden.end());
    return ref_forward(L, x, T, K, ids.data(), weights.data(), bf16_act);
  }
};

// forward() into a NaN-prefilled output starting `offset` elements into its buffer; returns
// the output widened to f32 and checks the guard after it.
std::vector<float> run_forward(const moe::MoeLayer& layer, bool bf16_act, const Tokens& tok,
                               size_t offset = 0) {
  const size_t H = layer.config().hidden_size, n = tok.T * H;
  std::vector<float> result(n);
  if (!bf16_act) {
    std::vector<float> in(offset + n), out(offset + n + kGuard, quiet_nan());
    std::copy(tok.hidden.begin(), tok.hidden.end(), in.begin() + offset);
    layer.forward(moe::DType::f32, in.data() + offset, tok.T, tok.ids.data(), tok.weights.data(),
                  out.data() + offset);
    for (size_t i = 0; i < kGuard; ++i) CHECK_MSG(std::isnan(out[offset + n + i]), "wrote past out");
    std::copy(out.begin() + offset, out.begin() + offset + n, result.begin());
  } else {
    std::vector<uint16_t> in(offset + n), out(offset + n + kGuard, kBf16QuietNan);
    for (size_t i = 0; i < n; ++i) in[offset + i] = moe::f32_to_bf16(tok.hidden[i]);
    layer.forward(moe::DType::bf16, in.data() + offset, tok.T, tok.ids.data(), tok.weights.data(),
                  out.data() + offset);
    for (size_t i = 0; i < kGuard; ++i) CHECK_MSG(out[offset + n + i] == kBf16QuietNan, "wrote past out");
    for (size_t i = 0; i < n; ++i) result[i] = bf16_bits_to_f32(out[offset + i]);
  }
  return result;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const char* dtype_name(moe::DType d) { return d == moe::DType::f32 ? "f32" : "bf16"; }

// One (weight dtype, activation dtype, activation) combination over both layouts, both
// orientations, with and without biases, T in {1, 3, 17}.
void check_forward_sweep(moe::DType wdtype, moe::DType adtype, moe::Activation act) {
  const Shape s{3, 17, 33, 2};
  const bool bf16_act = adtype == moe::DType::bf16;
  const double tol = (wdtype == moe::DType::f32 && !bf16_act) ? kTolF32 : kTolBf16;
  Rng rng(0xF0 + static_cast<uint64_t>(act) * 4 + (wdtype == moe::DType::bf16) * 2 + bf16_act);
  unsigned threads = 1;
  for (moe::W13Layout layout : {moe::W13Layout::halves, moe::W13Layout::interleaved})
    for (bool transposed : {false, true})
      for (bool biases : {false, true}) {
        const RefLayer L = make_ref_layer(s, act, biases, wdtype, rng);
        CallerWeights caller(L, layout, transposed, wdtype);
        threads = threads % 3 + 1;
        const moe::MoeLayer layer(make_config(s, act, layout, transposed, wdtype, threads),
                                  caller.weights());
        caller.poison();
        for (size_t T : {1, 3, 17}) {
          const Tokens tok(s, T, bf16_act, rng);
          const std::vector<float> out = run_forward(layer, bf16_act, tok, T == 3 ? 1 : 0);
          CHECK_ERROR(relative_error(tok.reference(L, s.K, bf16_act), out.data()), tol,
                      "weights " << dtype_name(wdtype) << " activations " << dtype_name(adtype)
                                 << " " << activation_name(act)
                                 << (layout == moe::W13Layout::interleaved ? " interleaved" : " halves")
                                 << " transposed=" << transposed << " biases=" << biases
                                 << " T=" << T << " threads=" << threads);
        }
      }
}

const bool kForwardSweepRegistered = [] {
  for (moe::DType wdtype : {moe::DType::f32, moe::DType::bf16})
    for (moe::DType adtype : {moe::DType::f32, moe::DType::bf16})
      for (moe::Activation act : kAllActivations)
        register_test(std::string("moe_forward_w") + dtype_name(wdtype) + "_a" +
                          dtype_name(adtype) + "_" + activation_name(act),
                      [=] { check_forward_sweep(wdtype, adtype, act); });
  return true;
}();

}  // namespace

// Shapes below one vector and past any tile or block size a vectorised kernel may use (odd
// remainders in every dimension), in the gpt-oss form (swigluoai, interleaved, transposed,
// biases) and the Mixtral form (silu, halves, no bias).
TEST(moe_forward_tiny_and_larger_shapes) {
  struct Case {
    Shape s;
    size_t T;
  };
  const Case cases[] = {{{2, 1, 1, 1}, 3},     {{3, 7, 5, 3}, 2},      {{8, 200, 144, 4}, 67},
                        {{5, 65, 257, 3}, 4}, {{16, 96, 80, 8}, 33}};
  for (const Case& c : cases)
    for (moe::DType wdtype : {moe::DType::f32, moe::DType::bf16})
      for (bool bf16_act : {false, true})
        for (bool gpt_oss : {false, true}) {
          Rng rng(0x1A26E + c.s.H + (wdtype == moe::DType::bf16) * 2 + bf16_act);
          const moe::Activation act = gpt_oss ? moe::Activation::swigluoai : moe::Activation::silu;
          const moe::W13Layout layout = gpt_oss ? moe::W13Layout::interleaved : moe::W13Layout::halves;
          const RefLayer L = make_ref_layer(c.s, act, gpt_oss, wdtype, rng);
          const CallerWeights caller(L, layout, gpt_oss, wdtype);
          const moe::MoeLayer layer(make_config(c.s, act, layout, gpt_oss, wdtype, 2),
                                    caller.weights());
          const Tokens tok(c.s, c.T, bf16_act, rng);
          const std::vector<float> out = run_forward(layer, bf16_act, tok, 3);
          const double tol = (wdtype == moe::DType::f32 && !bf16_act) ? kTolF32 : kTolBf16;
          CHECK_ERROR(relative_error(tok.reference(L, c.s.K, bf16_act), out.data()), tol,
                      "E=" << c.s.E << " H=" << c.s.H << " I=" << c.s.I << " K=" << c.s.K
                           << " T=" << c.T << " weights " << dtype_name(wdtype)
                           << " bf16 activations " << bf16_act << " gpt-oss form " << gpt_oss);
        }
}

// The seed bug: gpt-oss weights are interleaved. Given as interleaved with
// layout=interleaved they must equal the de-interleaved weights with layout=halves (also
// transposed, as Hugging Face holds them); declaring the wrong layout must visibly differ.
TEST(moe_gpt_oss_interleaved_equals_deinterleaved_halves) {
  const Shape s{4, 33, 17, 2};
  for (moe::DType wdtype : {moe::DType::f32, moe::DType::bf16}) {
    Rng rng(0x6F55 + (wdtype == moe::DType::bf16));
    const RefLayer L = make_ref_layer(s, moe::Activation::swigluoai, true, wdtype, rng);
    const Tokens tok(s, 5, false, rng);
    const std::vector<double> ref = tok.reference(L, s.K, false);
    const double tol = wdtype == moe::DType::f32 ? kTolF32 : kTolBf16;
    auto run = [&](moe::W13Layout data_layout, moe::W13Layout declared, bool transposed) {
      const CallerWeights caller(L, data_layout, transposed, wdtype);
      const moe::MoeLayer layer(
          make_config(s, moe::Activation::swigluoai, declared, transposed, wdtype, 2),
          caller.weights());
      return run_forward(layer, false, tok);
    };
    const moe::W13Layout HV = moe::W13Layout::halves, IL = moe::W13Layout::interleaved;
    const std::vector<float> inter = run(IL, IL, false), halves = run(HV, HV, false);
    const std::vector<float> inter_t = run(IL, IL, true), halves_t = run(HV, HV, true);
    const char* w = dtype_name(wdtype);
    CHECK_ERROR(relative_error(ref, inter.data()), tol, "interleaved, weights " << w);
    CHECK_ERROR(relative_error(ref, halves.data()), tol, "halves, weights " << w);
    CHECK_ERROR(relative_error(ref, inter_t.data()), tol, "interleaved transposed, weights " << w);
    CHECK_ERROR(relative_error(ref, halves_t.data()), tol, "halves transposed, weights " << w);
    CHECK_MSG(bitwise_equal(inter, halves), "interleaved != de-interleaved halves, weights " << w);
    CHECK_MSG(bitwise_equal(inter_t, halves_t),
              "transposed: interleaved != de-interleaved halves, weights " << w);
    const std::vector<float> wrong1 = run(IL, HV, false), wrong2 = run(HV, IL, true);
    CHECK_MSG(relative_error(ref, wrong1.data()) > 0.1,
              "interleaved weights declared halves give the right answer?, weights " << w);
    CHECK_MSG(relative_error(ref, wrong2.data()) > 0.1,
              "halves weights declared interleaved give the right answer?, weights " << w);
  }
}

// The same forward with 1, 2, 3 and 8 threads is bitwise identical (fixed summation order).
TEST(moe_forward_is_deterministic_across_thread_counts) {
  const Shape s{8, 64, 96, 4};
  for (moe::DType wdtype : {moe::DType::f32, moe::DType::bf16})
    for (bool bf16_act : {false, true}) {
      Rng rng(0xDE7 + (wdtype == moe::DType::bf16) * 2 + bf16_act);
      const RefLayer L = make_ref_layer(s, moe::Activation::silu, true, wdtype, rng);
      const CallerWeights caller(L, moe::W13Layout::halves, false, wdtype);
      const Tokens tok(s, 33, bf16_act, rng);
      std::vector<float> first;
      for (unsigned threads : {1u, 2u, 3u, 8u}) {
        const moe::MoeLayer layer(
            make_config(s, moe::Activation::silu, moe::W13Layout::halves, false, wdtype, threads),
            caller.weights());
        const std::vector<float> out = run_forward(layer, bf16_act, tok);
        if (first.empty()) {
          first = out;
          const double tol = (wdtype == moe::DType::f32 && !bf16_act) ? kTolF32 : kTolBf16;
          CHECK_ERROR(relative_error(tok.reference(L, s.K, bf16_act), out.data()), tol,
                      "weights " << dtype_name(wdtype) << " bf16 activations " << bf16_act);
        }
        CHECK_MSG(bitwise_equal(out, first), "threads=" << threads << " differs from threads=1,"
                                                        << " weights " << dtype_name(wdtype)
                                                        << " bf16 activations " << bf16_act);
      }
    }
}

// Two threads calling forward on the same layer at once both get the serial answer.
TEST(moe_forward_concurrent_calls) {
  const Shape s{8, 64, 96, 2};
  Rng rng(0xC0C0);
  const RefLayer L = make_ref_layer(s, moe::Activation::swigluoai, true, moe::DType::f32, rng);
  const CallerWeights caller(L, moe::W13Layout::interleaved, false, moe::DType::f32);
  const moe::MoeLayer layer(make_config(s, moe::Activation::swigluoai, moe::W13Layout::interleaved,
                                        false, moe::DType::f32, 2),
                            caller.weights());
  const Tokens tok_a(s, 5, false, rng), tok_b(s, 9, true, rng);
  const std::vector<float> serial_a = run_forward(layer, false, tok_a);
  const std::vector<float> serial_b = run_forward(layer, true, tok_b);
  CHECK_ERROR(relative_error(tok_a.reference(L, s.K, false), serial_a.data()), kTolF32, "serial a");
  CHECK_ERROR(relative_error(tok_b.reference(L, s.K, true), serial_b.data()), kTolBf16, "serial b");
  constexpr int kRepeats = 30;
  std::atomic<int> mismatches_a{0}, mismatches_b{0}, exceptions{0};
  auto worker = [&](const Tokens& tok, bool bf16_act, const std::vector<float>& expected,
                    std::atomic<int>& mismatches) {
    try {
      for (int i = 0; i < kRepeats; ++i) {
        const size_t H = s.H, n = tok.T * H;
        std::vector<float> out(n);
        if (!bf16_act) {
          layer.forward(moe::DType::f32, tok.hidden.data(), tok.T, tok.ids.data(),
                        tok.weights.data(), out.data());
        } else {
          std::vector<uint16_t> in(n), out16(n);
          moe::convert_f32_to_bf16(tok.hidden.data(), in.data(), n);
          layer.forward(moe::DType::bf16, in.data(), tok.T, tok.ids.data(), tok.weights.data(),
                        out16.data());
          for (size_t j = 0; j < n; ++j) out[j] = bf16_bits_to_f32(out16[j]);
        }
        if (!bitwise_equal(out, expected)) ++mismatches;
      }
    } catch (...) {
      ++exceptions;
    }
  };
  std::thread a(worker, std::cref(tok_a), false, std::cref(serial_a), std::ref(mismatches_a));
  std::thread b(worker, std::cref(tok_b), true, std::cref(serial_b), std::ref(mismatches_b));
  a.join();
  b.join();
  CHECK_MSG(exceptions == 0, exceptions << " concurrent forward calls threw");
  CHECK_MSG(mismatches_a == 0, mismatches_a << " of " << kRepeats << " concurrent calls (f32) differ");
  CHECK_MSG(mismatches_b == 0, mismatches_b << " of " << kRepeats << " concurrent calls (bf16) differ");
}

// An id outside [0, E) or a non-finite route weight throws before anything is written.
TEST(moe_forward_bad_routing_throws_and_writes_nothing) {
  const Shape s{3, 17, 33, 2};
  Rng rng(0xBAD0);
  const RefLayer L = make_ref_layer(s, moe::Activation::silu, false, moe::DType::f32, rng);
  const CallerWeights caller(L, moe::W13Layout::halves, false, moe::DType::f32);
  const moe::MoeLayer layer(
      make_config(s, moe::Activation::silu, moe::W13Layout::halves, false, moe::DType::f32, 2),
      caller.weights());
  const size_t T = 3, last = T * s.K - 1;
  const float inf = std::numeric_limits<float>::infinity();
  struct Bad {
    int32_t id;
    float weight;
  };
  const Bad bads[] = {{-1, 0.5f}, {3, 0.5f}, {1000, 0.5f}, {0, quiet_nan()}, {0, inf}, {0, -inf}};
  for (bool bf16_act : {false, true})
    for (const Bad& bad : bads) {
      Tokens tok(s, T, bf16_act, rng);
      tok.ids[last] = bad.id;
      tok.weights[last] = bad.weight;
      const std::string what = "id " + std::to_string(bad.id) + " weight " +
                               std::to_string(bad.weight) + (bf16_act ? " bf16" : " f32");
      const size_t bytes = T * s.H * (bf16_act ? 2 : 4);
      std::vector<unsigned char> in(bytes, 0), out(bytes, 0xA5);
      CHECK_THROWS(moe::InvalidArgument,
                   layer.forward(bf16_act ? moe::DType::bf16 : moe::DType::f32, in.data(), T,
                                 tok.ids.data(), tok.weights.data(), out.data()),
                   what);
      CHECK_MSG(out == std::vector<unsigned char>(bytes, 0xA5), "output written before throwing: " << what);
    }
}

TEST(moe_bad_config_throws_on_construction) {
  const std::vector<float> buffer(4096, 0.5f);
  const moe::MoeWeights w{{moe::WeightFormat::f32, buffer.data(), nullptr}, {moe::WeightFormat::f32, buffer.data(), nullptr}, {}, {}};
  struct Bad {
    Shape s;
    const char* why;
  };
  const Bad bads[] = {{{0, 4, 4, 1}, "E = 0"}, {{2, 0, 4, 1}, "H = 0"}, {{2, 4, 0, 1}, "I = 0"},
                      {{2, 4, 4, 0}, "K = 0"}, {{2, 4, 4, 3}, "K > E"}, {{0, 0, 0, 0}, "all zero"}};
  for (const Bad& bad : bads)
    CHECK_THROWS(moe::InvalidArgument,
                 moe::MoeLayer(make_config(bad.s, moe::Activation::silu, moe::W13Layout::halves,
                                           false, moe::DType::f32, 1),
                               w),
                 bad.why);
  CHECK_THROWS(moe::InvalidArgument, moe::MoeLayer(moe::MoeConfig{}, w), "default MoeConfig");
}

TEST(moe_config_and_bytes) {
  const Shape s{3, 17, 33, 2};
  for (moe::DType wdtype : {moe::DType::f32, moe::DType::bf16}) {
    Rng rng(0xB17E);
    const RefLayer L = make_ref_layer(s, moe::Activation::gelu, true, wdtype, rng);
    const CallerWeights caller(L, moe::W13Layout::interleaved, true, wdtype);
    const moe::MoeConfig config =
        make_config(s, moe::Activation::gelu, moe::W13Layout::interleaved, true, wdtype, 2);
    const moe::MoeLayer layer(config, caller.weights());
    const size_t weight_bytes = s.E * 3 * s.I * s.H * (wdtype == moe::DType::f32 ? 4 : 2);
    CHECK_MSG(layer.bytes() >= weight_bytes, "bytes() = " << layer.bytes() << " < the "
                                                          << weight_bytes << " bytes of weights");
    const moe::MoeConfig& got = layer.config();
    CHECK(got.num_experts == s.E && got.hidden_size == s.H && got.intermediate_size == s.I &&
          got.top_k == s.K && got.activation.kind == moe::Activation::gelu &&
          got.w13_layout == moe::W13Layout::interleaved && got.transposed &&
          got.weight_format == (wdtype == moe::DType::f32 ? moe::WeightFormat::f32 : moe::WeightFormat::bf16));
  }
}

namespace {

// A caller tensor [E][rows][depth] of `f` (or [E][depth][rows], for dense formats, when
// transposed), made from random values: whole, and the same bytes copied into one array per
// expert (separate allocations, as per-expert typed arrays are).
struct ExpertArrays {
  std::vector<uint8_t> codes, scales;
  std::vector<std::vector<uint8_t>> expert_codes, expert_scales;
  moe::WeightTensor whole, per_expert;

  ExpertArrays(moe::WeightFormat f, size_t E, size_t rows, size_t depth, Rng& rng) {
    const moe::FormatInfo& info = moe::format_info(f);
    std::vector<float> values(E * rows * depth);
    for (float& v : values) v = rng.uniform(-1, 1);
    codes.resize(E * rows * info.row_code_bytes(depth));
    scales.resize(E * rows * info.row_scale_bytes(depth));
    moe::quantize_rows(f, values.data(), E * rows, depth, codes.data(), scales.empty() ? nullptr : scales.data());
    whole = {f, codes.data(), scales.empty() ? nullptr : scales.data()};
    per_expert.format = f;
    const size_t code_bytes = codes.size() / E, scale_bytes = scales.size() / E;
    for (size_t e = 0; e < E; ++e) {
      expert_codes.emplace_back(codes.begin() + e * code_bytes, codes.begin() + (e + 1) * code_bytes);
      per_expert.expert_data.push_back(expert_codes.back().data());
      if (scale_bytes) {
        expert_scales.emplace_back(scales.begin() + e * scale_bytes, scales.begin() + (e + 1) * scale_bytes);
        per_expert.expert_scales.push_back(expert_scales.back().data());
      }
    }
  }
};

}  // namespace

// A tensor given as E per-expert pointers packs to exactly the bytes of the same tensor given
// whole: every source format, converted or not, both W13 layouts, transposed (dense) or not.
TEST(moe_per_expert_tensors_pack_like_whole_tensors) {
  const size_t E = 3, I = 40, H = 64;
  const moe::WeightFormat all[] = {moe::WeightFormat::f32, moe::WeightFormat::bf16, moe::WeightFormat::f16,
                                   moe::WeightFormat::mxfp4, moe::WeightFormat::int8};
  Rng rng(0xE9E7);
  for (moe::WeightFormat src : all)
    for (moe::WeightFormat dst : all)
      for (moe::W13Layout layout : {moe::W13Layout::halves, moe::W13Layout::interleaved})
        for (bool transposed : {false, true}) {
          const moe::FormatInfo& s = moe::format_info(src);
          const moe::FormatInfo& d = moe::format_info(dst);
          if (transposed && s.quantized()) continue;
          // Quantized sources hold blocks along the depth; transposed dense ones are [E][depth][rows]:
          // the bytes are the same either way, only their meaning differs.
          ExpertArrays a(src, E, 2 * I, H, rng);
          const size_t bytes = 2 * E * moe::packed_matrix_bytes(d, I, H);
          std::vector<uint8_t> whole(bytes, 0xA5), per_expert(bytes, 0xA5);  // panel tails past 64-byte alignment are not written
          moe::pack_panels({a.whole, E, 2, I, H, layout, transposed}, d, whole.data(), 2);
          moe::pack_panels({a.per_expert, E, 2, I, H, layout, transposed}, d, per_expert.data(), 2);
          CHECK_MSG(whole == per_expert, s.name << " -> " << d.name << (layout == moe::W13Layout::interleaved ? " interleaved" : " halves")
                                                << " transposed=" << transposed << ": per-expert packing differs");
        }
}

// A MoeLayer built from per-expert W13 and W2 computes bit for bit what the whole-tensor layer
// does; malformed per-expert tensors are refused before anything is allocated.
TEST(moe_layer_from_per_expert_tensors) {
  const Shape s{5, 64, 96, 2};
  Rng rng(0x9E11);
  for (moe::WeightFormat f : {moe::WeightFormat::bf16, moe::WeightFormat::mxfp4, moe::WeightFormat::int8}) {
    ExpertArrays w13(f, s.E, 2 * s.I, s.H, rng), w2(f, s.E, s.H, s.I, rng);
    moe::MoeConfig c = make_config(s, moe::Activation::silu, moe::W13Layout::interleaved, false, moe::DType::f32, 2);
    c.weight_format = f;
    const std::vector<float> b13(s.E * 2 * s.I, 0.25f), b2(s.E * s.H, -0.5f);
    const moe::WeightTensor bias13{moe::WeightFormat::f32, b13.data(), nullptr}, bias2{moe::WeightFormat::f32, b2.data(), nullptr};
    const moe::MoeLayer whole(c, {w13.whole, w2.whole, bias13, bias2});
    const moe::MoeLayer per_expert(c, {w13.per_expert, w2.per_expert, bias13, bias2});
    const moe::MoeLayer mixed(c, {w13.per_expert, w2.whole, bias13, bias2});
    CHECK(whole.bytes() == per_expert.bytes());
    for (size_t T : {1, 9}) {
      const Tokens tok(s, T, false, rng);
      const std::vector<float> a = run_forward(whole, false, tok), b = run_forward(per_expert, false, tok),
                               m = run_forward(mixed, false, tok);
      CHECK_MSG(bitwise_equal(a, b), moe::weight_format_name(f) << " T=" << T << ": per-expert layer differs");
      CHECK_MSG(bitwise_equal(a, m), moe::weight_format_name(f) << " T=" << T << ": per-expert W13 + whole W2 differs");
    }
    const bool quantized = moe::format_info(f).quantized();
    moe::WeightTensor short_list = w13.per_expert;
    short_list.expert_data.pop_back();
    CHECK_THROWS(moe::InvalidArgument, moe::MoeLayer(c, {short_list, w2.whole, {}, {}}), "E - 1 per-expert arrays");
    moe::WeightTensor null_entry = w13.per_expert;
    null_entry.expert_data[3] = nullptr;
    CHECK_THROWS(moe::InvalidArgument, moe::MoeLayer(c, {null_entry, w2.whole, {}, {}}), "a null expert");
    moe::WeightTensor both = w13.per_expert;
    both.data = w13.whole.data;
    CHECK_THROWS(moe::InvalidArgument, moe::MoeLayer(c, {both, w2.whole, {}, {}}), "whole and per expert at once");
    if (quantized) {
      moe::WeightTensor no_scales = w13.per_expert;
      no_scales.expert_scales.clear();
      CHECK_THROWS(moe::InvalidArgument, moe::MoeLayer(c, {no_scales, w2.whole, {}, {}}), "per-expert codes without scales");
    }
    moe::WeightTensor bias_per_expert;
    bias_per_expert.format = moe::WeightFormat::f32;
    for (size_t e = 0; e < s.E; ++e) bias_per_expert.expert_data.push_back(b13.data() + e * 2 * s.I);
    CHECK_THROWS(moe::InvalidArgument, moe::MoeLayer(c, {w13.whole, w2.whole, bias_per_expert, {}}), "a per-expert bias");
  }
}
