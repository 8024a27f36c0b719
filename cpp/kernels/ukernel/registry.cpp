// The registry of micro-kernels: every kernel compiled into this build, best first, scalar
// last. Dispatch (choose), the tests and the benchmark all iterate it.
#include "ukernel/ukernel.h"

#include <sstream>

namespace moe {
namespace ukernel {

namespace {

void append(std::vector<const UKernel*>& all, UKernelList list) {
  for (size_t i = 0; i < list.count; ++i) all.push_back(&list.items[i]);
}

bool has_feature(const std::vector<std::string>& features, const std::string& name) {
  for (const auto& f : features) if (f == name) return true;
  return false;
}

const UKernel* first(WeightFormat format, const std::string& kernel_set, Regime regime) {
  for (const UKernel* k : registry()) {
    if (k->weights != format || kernel_set != k->kernel_set || !runnable(*k)) continue;
    if (k->regime != regime && k->regime != Regime::any) continue;
    if (regime == Regime::decode && k->activations != DType::f32) continue;
    return k;
  }
  return nullptr;
}

}  // namespace

const std::vector<const UKernel*>& registry() {
  static const std::vector<const UKernel*> all = [] {
    std::vector<const UKernel*> list;
#if defined(__x86_64__) || defined(_M_X64)
    append(list, amx_ukernels());
    append(list, avx512_ukernels());
    append(list, avx2_ukernels());
#endif
#if defined(__aarch64__) && defined(__linux__)
    append(list, sve_bf16_ukernels());
    append(list, sve_ukernels());
#endif
#if defined(__aarch64__) && !defined(_WIN32)
    append(list, neon_bf16_ukernels());
    append(list, neon_ukernels());
#endif
    append(list, scalar_ukernels());
    return list;
  }();
  return all;
}

bool runnable(const UKernel& k) {
  const CpuInfo& cpu = cpu_info();
  if (!has_feature(cpu.kernels, k.kernel_set)) return false;
  std::istringstream needs(k.features);
  for (std::string need; needs >> need;) {
    if (!has_feature(cpu.features, need)) return false;
  }
  return true;
}

const char* extended_set(const std::string& kernel_set) { return kernel_set == "amx" ? "avx512" : ""; }

Choice choose(WeightFormat format, const std::string& kernel_set) {
  const std::string base = extended_set(kernel_set);
  Choice c{nullptr, nullptr, nullptr};
  if (base.empty()) {
    c.decode = first(format, kernel_set, Regime::decode);
    c.prefill = first(format, kernel_set, Regime::prefill);
  } else {
    c.tiles = first(format, kernel_set, Regime::prefill);
    c.decode = first(format, base, Regime::decode);
    c.prefill = first(format, base, Regime::prefill);
  }
  if (!c.decode) c.decode = first(format, "scalar", Regime::decode);
  if (!c.prefill) c.prefill = first(format, "scalar", Regime::prefill);
  if (!c.decode || !c.prefill) {
    throw InvalidArgument(std::string("no micro-kernel for ") + weight_format_name(format) + " weights in this build");
  }
  return c;
}

}  // namespace ukernel

std::vector<MicroKernelInfo> micro_kernels() {
  static const char* const regimes[] = {"decode", "prefill", "any"};
  std::vector<MicroKernelInfo> out;
  for (const ukernel::UKernel* k : ukernel::registry()) {
    out.push_back({k->name, weight_format_name(k->weights), k->activations == DType::bf16 ? "bf16" : "f32",
                   regimes[static_cast<int>(k->regime)], k->kernel_set, ukernel::runnable(*k)});
  }
  return out;
}

}  // namespace moe
