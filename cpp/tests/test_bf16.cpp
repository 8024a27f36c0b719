// bf16 conversions (bf16.cpp) against docs/spec.md: round to nearest, ties to even; NaN stays NaN.
#include <cstdint>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"

using namespace moetest;

namespace {

bool f32_bits_are_nan(uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }

// Reference rounding, spelled out: keep the high half, add one ulp if the dropped half is above
// the midpoint, or exactly the midpoint and the kept half is odd (a carry into the exponent is
// the correct next value, up to Inf). Not for NaN.
uint16_t ref_f32_to_bf16(uint32_t u) {
  const uint32_t kept = u >> 16, dropped = u & 0xFFFFu;
  const bool up = dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u));
  return static_cast<uint16_t>(kept + (up ? 1u : 0u));
}

// One f32 -> bf16 result against the reference; NaN must stay NaN and be quiet (header).
void check_one_rounding(uint32_t in, uint16_t got, const char* what) {
  if (f32_bits_are_nan(in)) {
    CHECK_MSG(bf16_is_nan(got) && (got & 0x0040),
              what << "(0x" << std::hex << in << ") = 0x" << got << ", expected a quiet NaN");
  } else {
    CHECK_MSG(got == ref_f32_to_bf16(in), what << "(0x" << std::hex << in << ") = 0x" << got
                                               << ", expected 0x" << ref_f32_to_bf16(in));
  }
}

// A mix of bit patterns for the array conversions: random bits, ties, denormals, specials.
std::vector<uint32_t> mixed_f32_bits(size_t count, Rng& rng) {
  static const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u,
                                      0x7FC00000u, 0x7F800001u, 0xFFC00001u, 0x7F7FFFFFu,
                                      0x00008000u, 0x00018000u, 0x007FFFFFu, 0x3F818000u};
  std::vector<uint32_t> v(count);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t r = rng.next();
    switch (r % 5) {
      case 0: v[i] = static_cast<uint32_t>(r >> 32); break;                           // any bits
      case 1: v[i] = f32_bits(rng.uniform(-100.0f, 100.0f)); break;
      case 2: v[i] = (static_cast<uint32_t>(r >> 32) & 0xFFFF0000u) | 0x8000u; break;  // tie
      case 3: v[i] = static_cast<uint32_t>(r >> 32) & 0x807FFFFFu; break;               // denormal
      default: v[i] = specials[(r >> 8) % (sizeof specials / sizeof specials[0])]; break;
    }
  }
  return v;
}

}  // namespace

TEST(bf16_rounding_hand_picked) {
  struct Case {
    uint32_t in;
    uint16_t out;
  };
  const Case cases[] = {
      {0x3F808000u, 0x3F80}, {0x3F818000u, 0x3F82},  // ties: even stays, odd rounds up
      {0xBF808000u, 0xBF80}, {0xBF818000u, 0xBF82},  // the same with the sign set
      {0x3F808001u, 0x3F81}, {0x3F807FFFu, 0x3F80}, {0x3F80FFFFu, 0x3F81},
      {0x3FFFFFFFu, 0x4000},                         // carry into the exponent
      {0x7F7FFFFFu, 0x7F80}, {0xFF7FFFFFu, 0xFF80},  // overflow to +-Inf
      {0x7F7F7FFFu, 0x7F7F},                         // largest finite stays finite
      {0x7F800000u, 0x7F80}, {0xFF800000u, 0xFF80},  // +-Inf
      {0x00000000u, 0x0000}, {0x80000000u, 0x8000},  // +-0
      {0x00008000u, 0x0000}, {0x00018000u, 0x0002},  // denormal ties
      {0x00000001u, 0x0000}, {0x80008001u, 0x8001}, {0x007FFFFFu, 0x0080},
  };
  for (const Case& c : cases) {
    const uint16_t got = moe::f32_to_bf16(f32_from_bits(c.in));
    CHECK_MSG(got == c.out, "f32_to_bf16(0x" << std::hex << c.in << ") = 0x" << got
                                             << ", expected 0x" << c.out);
  }
  // NaN stays NaN, including a signalling NaN whose payload is only in the dropped half
  // (truncation would turn it into Inf).
  for (uint32_t nan : {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu,
                       0x7F80FFFFu, 0x7FA00000u}) {
    check_one_rounding(nan, moe::f32_to_bf16(f32_from_bits(nan)), "f32_to_bf16");
  }
}

TEST(bf16_to_f32_is_exact_for_every_pattern) {
  for (uint32_t b = 0; b <= 0xFFFFu; ++b) {
    const float f = moe::bf16_to_f32(static_cast<uint16_t>(b));
    if (bf16_is_nan(static_cast<uint16_t>(b)))
      CHECK_MSG(std::isnan(f), "bf16_to_f32(0x" << std::hex << b << ") is not NaN");
    else
      CHECK_MSG(f32_bits(f) == b << 16, "bf16_to_f32(0x" << std::hex << b << ") = 0x"
                                                         << f32_bits(f));
  }
}

TEST(bf16_round_trip_of_every_pattern) {
  for (uint32_t b = 0; b <= 0xFFFFu; ++b) {
    const uint16_t back = moe::f32_to_bf16(moe::bf16_to_f32(static_cast<uint16_t>(b)));
    if (bf16_is_nan(static_cast<uint16_t>(b)))
      CHECK_MSG(bf16_is_nan(back), "round trip of NaN 0x" << std::hex << b << " gave 0x" << back);
    else
      CHECK_MSG(back == b, "round trip of 0x" << std::hex << b << " gave 0x" << back);
  }
}

// Every bf16 value with the dropped half set to just below, at and just above the midpoint
// (and the extremes), plus random bit patterns.
TEST(bf16_rounding_sweep) {
  for (uint32_t high = 0; high <= 0xFFFFu; ++high)
    for (uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu}) {
      const uint32_t in = high << 16 | low;
      check_one_rounding(in, moe::f32_to_bf16(f32_from_bits(in)), "f32_to_bf16");
    }
  Rng rng(0xBF16);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t in = static_cast<uint32_t>(rng.next());
    check_one_rounding(in, moe::f32_to_bf16(f32_from_bits(in)), "f32_to_bf16");
  }
}

// Array conversions over odd counts and misaligned starts; elements outside [offset,
// offset + count) must stay untouched.
TEST(bf16_convert_arrays_odd_counts_and_offsets) {
  Rng rng(0xC0417);
  constexpr size_t kGuard = 9;
  constexpr uint16_t kSentinel16 = 0x7FC5;
  constexpr uint32_t kSentinel32 = 0x7FC0DEADu;
  for (size_t count : {0, 1, 3, 7, 16, 17, 33, 64, 4097}) {
    for (size_t offset : {0, 1, 3}) {
      const std::vector<uint32_t> src_bits = mixed_f32_bits(count + offset, rng);
      std::vector<float> src(src_bits.size());
      for (size_t i = 0; i < src.size(); ++i) src[i] = f32_from_bits(src_bits[i]);
      std::vector<uint16_t> dst16(offset + count + kGuard, kSentinel16);
      moe::convert_f32_to_bf16(src.data() + offset, dst16.data() + offset, count);
      for (size_t i = 0; i < dst16.size(); ++i) {
        if (i < offset || i >= offset + count) {
          CHECK_MSG(dst16[i] == kSentinel16, "convert_f32_to_bf16 wrote outside [" << offset
                                                 << ", " << offset + count << "): index " << i);
        } else {
          check_one_rounding(src_bits[i], dst16[i], "convert_f32_to_bf16");
        }
      }

      std::vector<uint16_t> in16(offset + count);
      for (uint16_t& b : in16) b = static_cast<uint16_t>(rng.next());
      std::vector<float> dst32(offset + count + kGuard, f32_from_bits(kSentinel32));
      moe::convert_bf16_to_f32(in16.data() + offset, dst32.data() + offset, count);
      for (size_t i = 0; i < dst32.size(); ++i) {
        const uint32_t got = f32_bits(dst32[i]);
        if (i < offset || i >= offset + count) {
          CHECK_MSG(got == kSentinel32, "convert_bf16_to_f32 wrote outside [" << offset << ", "
                                            << offset + count << "): index " << i);
        } else if (bf16_is_nan(in16[i])) {
          CHECK_MSG(std::isnan(dst32[i]), "convert_bf16_to_f32: NaN 0x" << std::hex << in16[i]
                                              << " became 0x" << got);
        } else {
          CHECK_MSG(got == static_cast<uint32_t>(in16[i]) << 16,
                    "convert_bf16_to_f32(0x" << std::hex << in16[i] << ") = 0x" << got
                                             << " (count " << std::dec << count << ")");
        }
      }
    }
  }
}
