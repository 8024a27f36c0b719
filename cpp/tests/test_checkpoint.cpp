// Checkpoint loading helpers: router logits (router.cpp) against a float64 reference, MXFP4
// decode (mxfp4.cpp) bit-exact against the e2m1 x e8m0 definition of docs/spec.md "Dtypes".
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"

using namespace moetest;

namespace {

// e2m1 (sign, 2-bit exponent, 1-bit mantissa) from its definition: exponent 0 is subnormal
// (0 or 0.5), otherwise (1 + m/2) * 2^(e - 1).
double e2m1_value(unsigned code) {
  const unsigned e = (code >> 1) & 3, m = code & 1;
  const double magnitude = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::ldexp(1.0, int(e) - 1);
  return (code & 8) ? -magnitude : magnitude;
}

// The value of element i of an MXFP4 block, as the f32 the spec makes exact (inf past
// FLT_MAX, NaN for scale 0xFF).
float mxfp4_reference(const uint8_t* codes, uint8_t scale, size_t i) {
  if (scale == 0xFF) return quiet_nan();
  const uint8_t byte = codes[i / 2];
  const unsigned code = (i % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
  return static_cast<float>(e2m1_value(code) * std::ldexp(1.0, int(scale) - 127));
}

}  // namespace

TEST(mxfp4_decode_is_exact) {
  Rng rng(0x3F94);
  constexpr size_t kGuard = 4;
  for (size_t num_blocks : {1, 3, 17, 90, 256}) {
    for (size_t offset : {0, 1}) {
      std::vector<uint8_t> blocks(offset + num_blocks * moe::kMxfp4BlockBytes), scales(offset + num_blocks);
      for (uint8_t& b : blocks) b = static_cast<uint8_t>(rng.next());
      // Every scale byte once the 256-block run comes (0: 2^-127 subnormal, 0xFF: NaN,
      // 253 and 254: large codes overflow to inf), random realistic ones otherwise.
      for (size_t b = 0; b < num_blocks; ++b)
        scales[offset + b] = num_blocks == 256 ? static_cast<uint8_t>(b)
                                               : static_cast<uint8_t>(115 + rng.below(24));
      const size_t n = num_blocks * moe::kMxfp4BlockValues;
      std::vector<float> out32(offset + n + kGuard, f32_from_bits(0x7FC0DEADu));
      std::vector<uint16_t> out16(offset + n + kGuard, 0x7FC5);
      moe::decode_mxfp4_f32(blocks.data() + offset, scales.data() + offset, num_blocks,
                            out32.data() + offset);
      moe::decode_mxfp4_bf16(blocks.data() + offset, scales.data() + offset, num_blocks,
                             out16.data() + offset);
      for (size_t i = 0; i < n; ++i) {
        const size_t b = i / moe::kMxfp4BlockValues;
        const uint8_t scale = scales[offset + b];
        const float ref = mxfp4_reference(&blocks[offset + b * moe::kMxfp4BlockBytes], scale,
                                          i % moe::kMxfp4BlockValues);
        const float got = out32[offset + i];
        const uint16_t got16 = out16[offset + i];
        if (std::isnan(ref)) {
          CHECK_MSG(std::isnan(got) && bf16_is_nan(got16), "scale 0xFF must give NaN, element " << i);
        } else {
          CHECK_MSG(f32_bits(got) == f32_bits(ref), "decode_mxfp4_f32 element " << i << " = " << got
                                                        << ", expected " << ref << " (scale " << int(scale) << ")");
          CHECK_MSG(got16 == f32_bits(ref) >> 16 && (f32_bits(ref) & 0xFFFF) == 0,
                    "decode_mxfp4_bf16 element " << i << " = 0x" << std::hex << got16
                                                 << ", expected " << ref);
        }
      }
      for (size_t i = 0; i < kGuard; ++i) {
        CHECK_MSG(f32_bits(out32[offset + n + i]) == 0x7FC0DEADu, "decode_mxfp4_f32 wrote past the output");
        CHECK_MSG(out16[offset + n + i] == 0x7FC5, "decode_mxfp4_bf16 wrote past the output");
      }
    }
  }
}

// logits = hidden · Wᵀ + bias for every dtype pair, against float64; the thread count does not
// change a bit of the result.
TEST(router_logits_vs_reference_and_thread_counts) {
  struct Size {
    size_t T, H, E;
  };
  const Size sizes[] = {{1, 1, 3}, {3, 17, 32}, {4, 46, 8}, {17, 33, 8}, {5, 2880, 32}, {2, 263, 128}};
  Rng rng(0x2047E2);
  for (const Size& sz : sizes)
    for (moe::DType hdtype : {moe::DType::f32, moe::DType::bf16})
      for (moe::DType wdtype : {moe::DType::f32, moe::DType::bf16})
        for (bool with_bias : {false, true}) {
          const bool hb = hdtype == moe::DType::bf16, wb = wdtype == moe::DType::bf16;
          std::vector<float> hidden(sz.T * sz.H), weight(sz.E * sz.H), bias(sz.E);
          for (float& x : hidden) x = hb ? round_bf16(rng.uniform(-1, 1)) : rng.uniform(-1, 1);
          for (float& x : weight) x = wb ? round_bf16(rng.uniform(-1, 1)) : rng.uniform(-1, 1);
          for (float& x : bias) x = rng.uniform(-1, 1);
          std::vector<uint16_t> hidden16(hidden.size()), weight16(weight.size());
          moe::convert_f32_to_bf16(hidden.data(), hidden16.data(), hidden.size());
          moe::convert_f32_to_bf16(weight.data(), weight16.data(), weight.size());
          std::vector<double> ref(sz.T * sz.E);
          for (size_t t = 0; t < sz.T; ++t)
            for (size_t e = 0; e < sz.E; ++e) {
              double acc = with_bias ? bias[e] : 0.0;
              for (size_t h = 0; h < sz.H; ++h)
                acc += double(hidden[t * sz.H + h]) * weight[e * sz.H + h];
              ref[t * sz.E + e] = acc;
            }
          std::ostringstream where;
          where << "T=" << sz.T << " H=" << sz.H << " E=" << sz.E << " hidden "
                << (hb ? "bf16" : "f32") << " weight " << (wb ? "bf16" : "f32") << " bias " << with_bias;
          std::vector<float> first;
          for (unsigned threads : {1u, 2u, 3u}) {
            std::vector<float> logits(sz.T * sz.E + 3, quiet_nan());
            moe::router_logits(hdtype, hb ? static_cast<const void*>(hidden16.data()) : hidden.data(),
                               sz.T, sz.H, wdtype,
                               wb ? static_cast<const void*>(weight16.data()) : weight.data(), sz.E,
                               with_bias ? bias.data() : nullptr, logits.data(), threads);
            CHECK_MSG(std::isnan(logits[sz.T * sz.E]), "wrote past the logits: " << where.str());
            logits.resize(sz.T * sz.E);
            if (first.empty()) {
              first = logits;
              CHECK_ERROR(relative_error(ref, logits.data()), (hb || wb) ? kTolBf16 : kTolF32,
                          where.str());
            }
            CHECK_MSG(std::memcmp(first.data(), logits.data(), first.size() * sizeof(float)) == 0,
                      "threads=" << threads << " differs from threads=1: " << where.str());
          }
        }
}
