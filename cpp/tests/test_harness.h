// The test harness of the kernel tests: registration, checks that record a failure and go on,
// a deterministic PRNG and the precision metric of docs/spec.md ("Precision contract").
//
// A test case is a function registered with TEST(name) or moetest::register_test (for sweeps
// that register one case per parameter set). A case fails if any of its checks fails or if it
// throws; main() prints one line per failing check and `N passed, N failed` at the end.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "moe_cpu.h"

namespace moetest {

void register_test(std::string name, std::function<void()> fn);
void record_failure(const char* file, int line, const std::string& message);
// The running case cannot run on this machine (`reason`): unless a check of it failed, it is
// counted as skipped, neither passed nor failed, and listed as such.
void skip(const std::string& reason);

struct Registrar {
  Registrar(const char* name, void (*fn)()) { register_test(name, fn); }
};

// Tolerances of docs/spec.md "Precision contract": max|out - ref| / max|ref|.
constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16 = 1e-2;

// splitmix64: deterministic data, independent of the standard library's distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi), 24 random bits.
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }

 private:
  uint64_t state_;
};

inline float quiet_nan() { return std::numeric_limits<float>::quiet_NaN(); }
constexpr uint16_t kBf16QuietNan = 0x7FC0;

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// Exact widening, written here so the metric does not depend on the code under test.
inline float bf16_bits_to_f32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }
inline bool bf16_is_nan(uint16_t b) { return (b & 0x7F80) == 0x7F80 && (b & 0x007F) != 0; }

// A float rounded to a bf16-representable value with the library's helper (SPEC: the
// reference uses the same already-rounded values as the kernel).
inline float round_bf16(float f) { return moe::bf16_to_f32(moe::f32_to_bf16(f)); }

// docs/spec.md precision metric. Any NaN in `out` where the reference is a number (or the
// reverse) gives +inf, so NaN-prefilled outputs that were not written fail. An all-zero
// reference falls back to the absolute error.
inline double relative_error(const std::vector<double>& ref, const float* out) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i]) != std::isnan(out[i])) return std::numeric_limits<double>::infinity();
    if (std::isnan(ref[i])) continue;
    max_diff = std::fmax(max_diff, std::fabs(static_cast<double>(out[i]) - ref[i]));
    max_ref = std::fmax(max_ref, std::fabs(ref[i]));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}
inline double relative_error(const std::vector<double>& ref, const uint16_t* out_bf16) {
  std::vector<float> out(ref.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = bf16_bits_to_f32(out_bf16[i]);
  return relative_error(ref, out.data());
}

}  // namespace moetest

#define MOE_TEST_CAT2(a, b) a##b
#define MOE_TEST_CAT(a, b) MOE_TEST_CAT2(a, b)

// TEST(name) { ... } defines and registers one test case.
#define TEST(name)                                                                    \
  static void MOE_TEST_CAT(test_, name)();                                            \
  static const ::moetest::Registrar MOE_TEST_CAT(registrar_, name)(                   \
      #name, &MOE_TEST_CAT(test_, name));                                             \
  static void MOE_TEST_CAT(test_, name)()

// CHECK_MSG(cond, a << b << c): the message is only built when the check fails.
#define CHECK_MSG(cond, msg)                                                          \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::ostringstream moe_check_os_;                                               \
      moe_check_os_ << "CHECK(" #cond ") failed: " << msg;                            \
      ::moetest::record_failure(__FILE__, __LINE__, moe_check_os_.str());             \
    }                                                                                 \
  } while (0)

#define CHECK(cond) CHECK_MSG(cond, "")

// Precision check: `err` (from relative_error) must not exceed `tol`; NaN fails.
#define CHECK_ERROR(err, tol, msg)                                                    \
  do {                                                                                \
    const double moe_err_ = (err);                                                    \
    if (!(moe_err_ <= (tol))) {                                                       \
      std::ostringstream moe_check_os_;                                               \
      moe_check_os_ << "error " << moe_err_ << " > " << (tol) << ": " << msg;         \
      ::moetest::record_failure(__FILE__, __LINE__, moe_check_os_.str());             \
    }                                                                                 \
  } while (0)

// The statement must throw ExcType (another exception type, or none, fails).
#define CHECK_THROWS(ExcType, stmt, msg)                                              \
  do {                                                                                \
    std::ostringstream moe_check_os_;                                                 \
    bool moe_ok_ = false;                                                             \
    try {                                                                             \
      stmt;                                                                           \
      moe_check_os_ << "no exception from `" #stmt "`: " << msg;                      \
    } catch (const ExcType&) {                                                        \
      moe_ok_ = true;                                                                 \
    } catch (const std::exception& moe_e_) {                                          \
      moe_check_os_ << "`" #stmt "` threw another exception (" << moe_e_.what()        \
                    << "), expected " #ExcType ": " << msg;                           \
    } catch (...) {                                                                   \
      moe_check_os_ << "`" #stmt "` threw a non-std exception, expected " #ExcType     \
                    << ": " << msg;                                                   \
    }                                                                                 \
    if (!moe_ok_) ::moetest::record_failure(__FILE__, __LINE__, moe_check_os_.str());  \
  } while (0)
