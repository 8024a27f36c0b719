#include "layout_cases.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "presets.h"
#include "proc.h"
#include "timing.h"
#include "weights.h"

namespace bench {

namespace {

// gpt-oss W13 rows (2I = 5760 rows of H = 2880) for 6 experts: 199 MB in bf16.
constexpr moe::W13Shape kDeinterleaveShape{6, 2880, 2880};
// Rounds of (memcpy, out of place, in place), alternated so that load changes hit all three.
constexpr int kLayoutRounds = 9;
constexpr size_t kHugePage = size_t{2} << 20;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<char, FreeDeleter>;

// Huge-page aligned and advised, like the library's own large buffers; written once so every
// page is resident before timing.
Buffer make_buffer(size_t bytes) {
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  Buffer b(static_cast<char*>(std::aligned_alloc(kHugePage, rounded)));
  if (!b) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(b.get(), rounded, MADV_HUGEPAGE);
#endif
  std::memset(b.get(), 0x3c, rounded);
  return b;
}

double gb(size_t bytes) { return bytes / 1e9; }

}  // namespace

void run_deinterleave_case(int iters, Report& report) {
  const size_t bytes = kDeinterleaveShape.elements() * 2;
  std::printf("\nde-interleave of a bf16 W13 [%zu, 2x%zu, %zu] (%.0f MB), 1 thread, vs memcpy\n",
              kDeinterleaveShape.outer, kDeinterleaveShape.intermediate, kDeinterleaveShape.inner, bytes / 1e6);
  Buffer src = make_buffer(bytes), dst = make_buffer(bytes);
  fill_random(src.get(), kDeinterleaveShape.elements(), moe::DType::bf16, 5);

  struct Op {
    const char* name;
    std::function<void()> run;
    std::vector<double> ms;
  };
  std::vector<Op> ops = {
      {"memcpy", [&] { std::memcpy(dst.get(), src.get(), bytes); }, {}},
      {"out of place", [&] { moe::deinterleave_w13(src.get(), dst.get(), 2, kDeinterleaveShape); }, {}},
      {"in place", [&] { moe::deinterleave_w13_in_place(dst.get(), 2, kDeinterleaveShape); }, {}},
  };
  for (auto& op : ops) op.run();  // warm-up
  const int rounds = (iters > 0 ? iters : kLayoutRounds) | 1;
  for (int r = 0; r < rounds; ++r) {
    for (auto& op : ops) {
      const double t0 = now_seconds();
      op.run();
      op.ms.push_back((now_seconds() - t0) * 1e3);
    }
  }
  const double memcpy_ms = median(ops[0].ms), out_ms = median(ops[1].ms), in_ms = median(ops[2].ms);
  Table table({"operation", "median ms", "GB/s", "% of memcpy"}, 10);
  table.print_header();
  for (auto& op : ops) {
    const double ms = median(op.ms);
    table.print_row({op.name, fixed(ms, 2), fixed(bytes / ms / 1e6, 2), fixed(100 * memcpy_ms / ms, 1)});
  }
  std::printf("  in place takes %.2fx the time of out of place (and no second buffer)\n", in_ms / out_ms);
  report.add("deinterleave", Record()
                                 .text("dtype", "bf16")
                                 .count("bytes", static_cast<long long>(bytes))
                                 .count("rounds", rounds)
                                 .num("memcpy_ms", memcpy_ms)
                                 .num("out_of_place_ms", out_ms)
                                 .num("in_place_ms", in_ms)
                                 .num("memcpy_gbps", bytes / memcpy_ms / 1e6)
                                 .num("out_of_place_gbps", bytes / out_ms / 1e6)
                                 .num("in_place_gbps", bytes / in_ms / 1e6)
                                 .num("out_of_place_fraction_of_memcpy", memcpy_ms / out_ms)
                                 .num("in_place_fraction_of_memcpy", memcpy_ms / in_ms)
                                 .num("in_place_over_out_of_place", in_ms / out_ms));
}

void run_packing_case(Report& report) {
  const Preset& p = *find_preset("gpt-oss-20b");
  const moe::DType dtype = moe::DType::bf16;
  const size_t w13_count = p.E * 2 * p.I * p.H, w2_count = p.E * p.H * p.I;
  const size_t caller_bytes = (w13_count + w2_count + p.E * (2 * p.I + p.H)) * 2;
  std::printf("\nlayer creation (packing) of %s, bf16 weights, from the caller's arrays\n", p.name);
  const size_t available = available_memory_bytes();
  const size_t needed = 2 * caller_bytes + memory_margin_bytes();
  if (available && needed > available) {
    std::printf("  skipped: needs %.1f GB, %.1f GB available\n", gb(needed), gb(available));
    report.add("skipped", Record().text("preset", p.name).text("case", "packing").text("reason", "memory"));
    return;
  }
  const size_t rss_start = resident_bytes();
  std::unique_ptr<uint16_t[]> w13(new uint16_t[w13_count]), w2(new uint16_t[w2_count]);
  std::vector<uint16_t> b13(p.E * 2 * p.I), b2(p.E * p.H);
  fill_random(w13.get(), w13_count, dtype, 1);
  fill_random(w2.get(), w2_count, dtype, 2);
  fill_random(b13.data(), b13.size(), dtype, 3);
  fill_random(b2.data(), b2.size(), dtype, 4);
  const size_t rss_caller = resident_bytes();

  reset_peak_resident();
  const double t0 = now_seconds();
  auto layer = std::make_unique<moe::MoeLayer>(p.config(moe::WeightFormat::bf16, 0), moe::MoeWeights{{moe::WeightFormat::bf16, w13.get(), nullptr}, {moe::WeightFormat::bf16, w2.get(), nullptr}, {moe::WeightFormat::bf16, b13.data(), nullptr}, {moe::WeightFormat::bf16, b2.data(), nullptr}});
  const double pack_seconds = now_seconds() - t0;
  const size_t rss_peak = peak_resident_bytes(), rss_packed = resident_bytes();

  w13.reset();
  w2.reset();
  std::vector<uint16_t>().swap(b13);
  std::vector<uint16_t>().swap(b2);
  const size_t rss_freed = resident_bytes();
  const size_t packed = layer->bytes();
  layer.reset();
  const size_t rss_end = resident_bytes();

  // Held after the caller's arrays are gone, against what the layer says it holds: a second
  // copy (or a leaked staging buffer) would show as a whole extra tensor here.
  const double held = static_cast<double>(rss_freed) - static_cast<double>(rss_start);
  const double extra_during_packing = static_cast<double>(rss_peak) - static_cast<double>(rss_caller) - packed;
  const bool no_second_copy = held < 1.05 * packed + (32 << 20) && extra_during_packing < 0.05 * packed + (32 << 20);
  std::printf("  packed in %.2f s with %u threads; layer holds %.3f GB (caller's arrays %.3f GB)\n", pack_seconds,
              moe::physical_core_count(), gb(packed), gb(caller_bytes));
  std::printf("  VmRSS: start %.3f GB, + caller's arrays %.3f GB, peak while packing %.3f GB, after packing %.3f GB,\n"
              "         after freeing the caller's arrays %.3f GB (held %.3f GB = %.3fx the packed bytes), "
              "after dispose %.3f GB\n",
              gb(rss_start), gb(rss_caller), gb(rss_peak), gb(rss_packed), gb(rss_freed), held / 1e9, held / packed,
              gb(rss_end));
  std::printf("  no second copy: %s\n", no_second_copy ? "yes" : "NO");
  report.add("packing", Record()
                            .text("preset", p.name)
                            .text("weight_dtype", "bf16")
                            .count("threads", moe::physical_core_count())
                            .num("seconds", pack_seconds)
                            .count("packed_bytes", static_cast<long long>(packed))
                            .count("caller_bytes", static_cast<long long>(caller_bytes))
                            .count("rss_start_bytes", static_cast<long long>(rss_start))
                            .count("rss_with_caller_bytes", static_cast<long long>(rss_caller))
                            .count("rss_peak_packing_bytes", static_cast<long long>(rss_peak))
                            .count("rss_packed_bytes", static_cast<long long>(rss_packed))
                            .count("rss_caller_freed_bytes", static_cast<long long>(rss_freed))
                            .count("rss_disposed_bytes", static_cast<long long>(rss_end))
                            .num("held_over_packed", held / packed)
                            .flag("no_second_copy", no_second_copy));
}

}  // namespace bench
