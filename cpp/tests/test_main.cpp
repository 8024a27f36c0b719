// Runner of the kernel tests: `moe_kernel_tests [filter]` runs every registered case whose name
// contains `filter`, prints one line per failing check and per skipped case and ends with
// `N passed, N failed` (after `N skipped` when some were).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "moe_cpu.h"
#include "test_harness.h"

namespace moetest {
namespace {

struct TestCase {
  std::string name;
  std::function<void()> fn;
};

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;  // function-local: filled by static initialisers
  return tests;
}

// A broken kernel can fail thousands of element checks; past this many lines per case only a
// count is printed.
constexpr size_t kMaxPrintedFailuresPerCase = 25;

const TestCase* g_current = nullptr;
size_t g_case_failures = 0;
std::string g_case_skip;

}  // namespace

void register_test(std::string name, std::function<void()> fn) {
  registry().push_back({std::move(name), std::move(fn)});
}

void record_failure(const char* file, int line, const std::string& message) {
  if (++g_case_failures <= kMaxPrintedFailuresPerCase)
    std::printf("FAIL %s: %s:%d: %s\n", g_current ? g_current->name.c_str() : "?", file, line,
                message.c_str());
}

void skip(const std::string& reason) { g_case_skip = reason; }

}  // namespace moetest

TEST(cpu_info_reports_arch_and_kernel) {
  const moe::CpuInfo& info = moe::cpu_info();
  CHECK_MSG(!info.arch.empty(), "cpu_info().arch is empty");
  CHECK_MSG(!info.kernel.empty(), "cpu_info().kernel is empty");
  CHECK_MSG(&moe::cpu_info() == &info, "cpu_info() is detected once and returns the same object");
}

// simdjson's checkimplementation: a kernel set forced with MOE_CPU_ISA is the one that runs,
// so `MOE_CPU_ISA=avx512 moe_kernel_tests` really tests the AVX-512 kernels.
TEST(cpu_info_kernel_is_known_and_the_forced_one) {
  const std::string kernel = moe::cpu_info().kernel;
  CHECK_MSG(kernel == "scalar" || kernel == "avx2" || kernel == "avx512" || kernel == "amx" || kernel == "neon" ||
                kernel == "sve",
            "unknown kernel set \"" << kernel << "\"");
  const char* forced = std::getenv("MOE_CPU_ISA");
  if (forced && *forced)
    CHECK_MSG(kernel == forced, "MOE_CPU_ISA=" << forced << " but the kernel set is " << kernel);
}

TEST(physical_core_count_is_positive) { CHECK(moe::physical_core_count() >= 1); }

int main(int argc, char** argv) {
  using namespace moetest;
  const std::string filter = argc > 1 ? argv[1] : "";
  size_t passed = 0, failed = 0, skipped = 0;
  for (const TestCase& test : registry()) {
    if (test.name.find(filter) == std::string::npos) continue;
    g_current = &test;
    g_case_failures = 0;
    g_case_skip.clear();
    try {
      test.fn();
    } catch (const std::exception& e) {
      record_failure(__FILE__, __LINE__, std::string("unexpected exception: ") + e.what());
    } catch (...) {
      record_failure(__FILE__, __LINE__, "unexpected non-std exception");
    }
    if (g_case_failures > kMaxPrintedFailuresPerCase)
      std::printf("FAIL %s: ... %zu more failing checks not shown\n", test.name.c_str(),
                  g_case_failures - kMaxPrintedFailuresPerCase);
    if (g_case_failures == 0 && !g_case_skip.empty()) {
      std::printf("SKIP %s: %s\n", test.name.c_str(), g_case_skip.c_str());
      ++skipped;
      continue;
    }
    (g_case_failures == 0 ? passed : failed)++;
  }
  if (passed + failed == 0) std::fprintf(stderr, "no test name contains \"%s\"\n", filter.c_str());
  if (skipped > 0) std::printf("%zu skipped\n", skipped);
  std::printf("%zu passed, %zu failed\n", passed, failed);
  return (failed == 0 && passed > 0) ? 0 : 1;
}
