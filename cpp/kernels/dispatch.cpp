// CPU detection and the choice of kernel set, made once per process.
//
// Features are what both the CPU and the OS support (on x86, xgetbv says whether the OS saves
// the AVX / AVX-512 register state). MOE_CPU_ISA forces a kernel set; a request this build or
// this CPU cannot honour is an error, never a silent fallback, so a test that forces a path
// knows that path ran.
#include <cstdlib>
#include <string>
#include <vector>

#include "moe_cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define MOE_X86 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define MOE_ARM64_LINUX 1
#endif

namespace moe {

namespace {

// Kernel sets compiled into this build, best last.
const std::vector<std::string>& built_kernels() {
  static const std::vector<std::string> kernels = {"scalar"};
  return kernels;
}

#if MOE_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

std::vector<std::string> detect_features() {
  std::vector<std::string> f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  f.push_back("sse2");
  const unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM and YMM state
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;       // plus opmask and ZMM state
  if (!(avx && os_avx)) return f;
  f.push_back("avx");
  if (fma) f.push_back("fma");
  if (f16c) f.push_back("f16c");
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  if (b & (1u << 5)) f.push_back("avx2");
  if (!os_avx512) return f;
  const bool avx512f = b & (1u << 16);
  if (!avx512f) return f;
  f.push_back("avx512f");
  if (b & (1u << 17)) f.push_back("avx512dq");
  if (b & (1u << 30)) f.push_back("avx512bw");
  if (b & (1u << 31)) f.push_back("avx512vl");
  unsigned a1, b1, c1, d1;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  if (a1 & (1u << 5)) f.push_back("avx512bf16");
  return f;
}
#elif MOE_ARM64_LINUX
std::vector<std::string> detect_features() {
  std::vector<std::string> f = {"neon"};
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  if (hwcap & (1ul << 22)) f.push_back("sve");      // HWCAP_SVE
  if (hwcap2 & (1ul << 1)) f.push_back("sve2");     // HWCAP2_SVE2
  if (hwcap2 & (1ul << 14)) f.push_back("bf16");    // HWCAP2_BF16
  if (hwcap2 & (1ul << 13)) f.push_back("i8mm");    // HWCAP2_I8MM
  return f;
}
#else
std::vector<std::string> detect_features() { return {}; }
#endif

std::string detect_arch() {
#if MOE_X86
  return "x64";
#elif defined(__aarch64__)
  return "arm64";
#else
  return "unknown";
#endif
}

CpuInfo detect() {
  CpuInfo info;
  info.arch = detect_arch();
  info.features = detect_features();
  const auto& kernels = built_kernels();
  info.kernel = kernels.back();
  const char* forced = std::getenv("MOE_CPU_ISA");
  if (forced && *forced) {
    const std::string name = forced;
    bool built = false;
    for (const auto& k : kernels) built = built || k == name;
    if (!built) {
      std::string list;
      for (const auto& k : kernels) list += (list.empty() ? "" : ", ") + k;
      throw InvalidArgument("MOE_CPU_ISA=" + name + ": this build has no such kernel set (built: " +
                            list + ")");
    }
    info.kernel = name;
  }
  return info;
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect();
  return info;
}

}  // namespace moe
