// CPU detection and the choice of kernel set, made once per process (the micro-kernels of the
// set are chosen per weight format by the registry, ukernel/registry.cpp).
//
// Features are what both the CPU and the OS support (on x86, xgetbv says whether the OS saves
// the AVX / AVX-512 register state). MOE_CPU_ISA forces a kernel set; a request this build or
// this CPU cannot honour is an error, never a silent fallback, so a test that forces a path
// knows that path ran.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <string>
#include <vector>

#include "ukernel/elementwise_table.h"
#include "moe_cpu.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define MOE_X86 1
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define MOE_ARM64 1
#define MOE_ARM64_LINUX 1
#elif defined(__aarch64__) && !defined(_WIN32)
#define MOE_ARM64 1
#endif

namespace moe {

namespace {

#if MOE_X86
unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

// Linux hands out the tile data state (8 KB per thread) only to a process that asks, once for
// the whole process (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA; Linux 5.16+). It
// refuses where a thread's signal stack is too small for the larger signal frame. Elsewhere
// the tiles are not offered.
bool amx_permitted() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
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
  // AMX: the CPU has the tiles (CPUID 7.0 EDX 24: AMX-TILE, 22: AMX-BF16, 25: AMX-INT8), the OS
  // saves their state (XCR0 17: XTILECFG, 18: XTILEDATA), and this process may use them.
  const bool amx_tile = d & (1u << 24), amx_bf16 = d & (1u << 22), amx_int8 = d & (1u << 25);
  if (amx_tile && (xcr0 & 0x60000) == 0x60000 && amx_permitted()) {
    f.push_back("amx-tile");
    if (amx_bf16) f.push_back("amx-bf16");
    if (amx_int8) f.push_back("amx-int8");
  }
  return f;
}
#elif MOE_ARM64_LINUX
std::vector<std::string> detect_features() {
  std::vector<std::string> f = {"neon"};
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  if (hwcap & (1ul << 22)) f.push_back("sve");      // HWCAP_SVE
  if (hwcap2 & (1ul << 1)) f.push_back("sve2");     // HWCAP2_SVE2
  if (hwcap2 & (1ul << 14)) f.push_back("bf16");    // HWCAP2_BF16
  if (hwcap2 & (1ul << 12)) f.push_back("svebf16"); // HWCAP2_SVEBF16
  if (hwcap2 & (1ul << 13)) f.push_back("i8mm");    // HWCAP2_I8MM
  return f;
}
#elif MOE_ARM64
// Advanced SIMD is part of every AArch64 ABI; bf16 is not detected outside Linux yet.
std::vector<std::string> detect_features() { return {"neon"}; }
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

bool has(const std::vector<std::string>& features, const char* name) {
  for (const auto& f : features) if (f == name) return true;
  return false;
}

// A kernel set compiled into this build and the CPU features it needs.
struct KernelSet {
  const char* name;
  std::vector<const char*> needs;
};

// Best last.
const std::vector<KernelSet>& built_kernel_sets() {
  static const std::vector<KernelSet> sets = {
      {"scalar", {}},
#if MOE_X86
      {"avx2", {"avx2", "fma"}},
      {"avx512", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "f16c"}},
      // Prefill on the tiles; decode and everything else on avx512 (ukernel::extended_set).
      {"amx", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "f16c", "avx512bf16", "amx-tile", "amx-bf16"}},
#endif
#if MOE_ARM64
      {"neon", {"neon"}},
#endif
#if MOE_ARM64_LINUX
      {"sve", {"sve"}},
#endif
  };
  return sets;
}

std::string missing_features(const KernelSet& set, const std::vector<std::string>& features) {
  std::string missing;
  for (const char* need : set.needs) {
    if (!has(features, need)) missing += (missing.empty() ? "" : " ") + std::string(need);
  }
  return missing;
}

CpuInfo detect() {
  CpuInfo info;
  info.arch = detect_arch();
  info.features = detect_features();
  for (const auto& set : built_kernel_sets()) {
    if (missing_features(set, info.features).empty()) info.kernels.push_back(set.name);
  }
  info.kernel = info.kernels.back();
  const char* forced = std::getenv("MOE_CPU_ISA");
  if (!forced || !*forced) return info;
  const std::string name = forced;
  std::string built;
  for (const auto& set : built_kernel_sets()) {
    built += (built.empty() ? "" : ", ") + std::string(set.name);
    if (name != set.name) continue;
    const std::string missing = missing_features(set, info.features);
    if (!missing.empty()) {
      throw InvalidArgument("MOE_CPU_ISA=" + name + ": this CPU lacks " + missing);
    }
    info.kernel = name;
    return info;
  }
  throw InvalidArgument("MOE_CPU_ISA=" + name + ": this build has no such kernel set (built for " +
                        info.arch + ": " + built + ")");
}

}  // namespace

const CpuInfo& cpu_info() {
  static const CpuInfo info = detect();
  return info;
}

// Linux: what /proc/meminfo says could be had without killing anything (MemAvailable +
// SwapFree), bounded by the cgroup v2 limit of the process's group when it sets one.
size_t available_memory_bytes() {
  size_t available = SIZE_MAX;
#if defined(__linux__)
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kb;
    size_t mem = 0, swap = 0;
    bool seen = false;
    while (std::fscanf(f, "%63s %llu kB\n", key, &kb) == 2) {
      if (std::strcmp(key, "MemAvailable:") == 0) mem = static_cast<size_t>(kb) * 1024, seen = true;
      if (std::strcmp(key, "SwapFree:") == 0) swap = static_cast<size_t>(kb) * 1024;
    }
    std::fclose(f);
    if (seen) available = mem + swap;
  }
  unsigned long long max = 0, current = 0;
  FILE* fmax = std::fopen("/sys/fs/cgroup/memory.max", "r");
  FILE* fcur = std::fopen("/sys/fs/cgroup/memory.current", "r");
  if (fmax && fcur && std::fscanf(fmax, "%llu", &max) == 1 && std::fscanf(fcur, "%llu", &current) == 1 && max > current) {
    available = std::min<size_t>(available, static_cast<size_t>(max - current));
  }
  if (fmax) std::fclose(fmax);
  if (fcur) std::fclose(fcur);
#endif
  return available;
}

namespace isa {

const ElementwiseTable& active_elementwise() {
  static const ElementwiseTable* table = [] {
#if MOE_X86
    const std::string& kernel = cpu_info().kernel;
    if (kernel == "avx2") return &avx2_elementwise();
    if (kernel == "avx512" || kernel == "amx") return &avx512_elementwise();
#endif
#if MOE_ARM64
    if (cpu_info().kernel == "neon") return &neon_elementwise();
#endif
#if MOE_ARM64_LINUX
    if (cpu_info().kernel == "sve") return &sve_elementwise();
#endif
    return &scalar_elementwise();
  }();
  return *table;
}

}  // namespace isa

}  // namespace moe
