// The kernels here are compiled for AVX2 / AVX-512 by target attributes, which is fine in a
// benchmark binary: each is called only after cpu_info() says the CPU and OS support it, and
// they use raw pointers and intrinsics only (no inline library code is compiled twice).
#include "limits.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "moe_cpu.h"
#include "timing.h"

namespace bench {

namespace {

// 16x the 32 MiB L3 of the machines we run on: a pass streams from DRAM, not cache.
constexpr size_t kReadBufferBytes = size_t{512} << 20;
constexpr size_t kHugePage = size_t{2} << 20;
// Floats read per loop iteration by every read kernel (8 accumulators of 16 lanes).
constexpr size_t kReadStep = 128;
// Threads take the buffer 1 MiB at a time from a shared counter, as the library's pool hands
// out its tasks: a thread slowed by another process leaves its share to the others instead of
// stretching the pass (a fixed split would measure the slowest thread, not the machine).
constexpr size_t kReadTaskFloats = (size_t{1} << 20) / sizeof(float);
// Independent accumulator chains: enough to cover FMA latency x throughput (4 x 2 on Zen 4,
// 4 x 2 on Intel cores), few enough to stay in registers (16 ymm on AVX2).
#define BENCH_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
constexpr int kChains = 12;
// Loop iterations of a peak kernel per thread and pass (~15 ms of FMAs on a 3-4 GHz core),
// handed out in tasks of kPeakTaskIterations (~0.5 ms) like the read buffer.
constexpr size_t kPeakIterations = size_t{1} << 22;
constexpr size_t kPeakTaskIterations = size_t{1} << 15;
// Passes per limit. A limit is what the machine can do and other processes can only slow a
// pass down, so the fastest pass counts (the cases, judged against it, quote medians); more
// passes give a quiet moment more chances.
constexpr int kPasses = 11;

volatile float g_sink;  // results go here so no kernel is optimised away

float sum_lanes(const float* lanes, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += lanes[i];
  return s;
}

float read_sum_generic(const float* p, size_t n) {
  float s[8] = {};
  for (size_t i = 0; i < n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += p[i + j];
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

float fma_chains_generic(size_t iters) {
#define BENCH_DECL(i) float c##i = 0.01f * (i);
#define BENCH_STEP(i) c##i = c##i * 0.999f + 0.001f;
#define BENCH_SUM(i) + c##i
  BENCH_CHAINS(BENCH_DECL)
  for (size_t it = 0; it < iters; ++it) {
    BENCH_CHAINS(BENCH_STEP)
  }
  return 0 BENCH_CHAINS(BENCH_SUM);
#undef BENCH_DECL
#undef BENCH_STEP
#undef BENCH_SUM
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) float read_sum_avx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (size_t i = 0; i < n; i += kReadStep) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    a4 = _mm512_add_ps(a4, _mm512_load_ps(p + i + 64));
    a5 = _mm512_add_ps(a5, _mm512_load_ps(p + i + 80));
    a6 = _mm512_add_ps(a6, _mm512_load_ps(p + i + 96));
    a7 = _mm512_add_ps(a7, _mm512_load_ps(p + i + 112));
  }
  a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                     _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, a0);
  return sum_lanes(lanes, 16);
}

__attribute__((target("avx2"))) float read_sum_avx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (size_t i = 0; i < n; i += 64) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    a4 = _mm256_add_ps(a4, _mm256_load_ps(p + i + 32));
    a5 = _mm256_add_ps(a5, _mm256_load_ps(p + i + 40));
    a6 = _mm256_add_ps(a6, _mm256_load_ps(p + i + 48));
    a7 = _mm256_add_ps(a7, _mm256_load_ps(p + i + 56));
  }
  a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                     _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, a0);
  return sum_lanes(lanes, 8);
}

// c = c * a + b converges to b / (1 - a): no overflow, no denormals, however long it runs.
__attribute__((target("avx512f"))) float fma_chains_avx512(size_t iters) {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
#define BENCH_DECL(i) __m512 c##i = _mm512_set1_ps(0.01f * (i));
#define BENCH_STEP(i) c##i = _mm512_fmadd_ps(c##i, a, b);
#define BENCH_SUM(i) s = _mm512_add_ps(s, c##i);
  BENCH_CHAINS(BENCH_DECL)
  for (size_t it = 0; it < iters; ++it) {
    BENCH_CHAINS(BENCH_STEP)
  }
  __m512 s = _mm512_setzero_ps();
  BENCH_CHAINS(BENCH_SUM)
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  return sum_lanes(lanes, 16);
#undef BENCH_DECL
#undef BENCH_STEP
#undef BENCH_SUM
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(size_t iters) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
#define BENCH_DECL(i) __m256 c##i = _mm256_set1_ps(0.01f * (i));
#define BENCH_STEP(i) c##i = _mm256_fmadd_ps(c##i, a, b);
#define BENCH_SUM(i) s = _mm256_add_ps(s, c##i);
  BENCH_CHAINS(BENCH_DECL)
  for (size_t it = 0; it < iters; ++it) {
    BENCH_CHAINS(BENCH_STEP)
  }
  __m256 s = _mm256_setzero_ps();
  BENCH_CHAINS(BENCH_SUM)
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  return sum_lanes(lanes, 8);
#undef BENCH_DECL
#undef BENCH_STEP
#undef BENCH_SUM
}

// vdpbf16ps: per f32 lane, c += a[2i] * b[2i] + a[2i+1] * b[2i+1] (4 flops; 64 per zmm).
__attribute__((target("avx512f,avx512bf16"))) float bf16_dot_chains_avx512(size_t iters) {
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.01f), _mm512_set1_ps(0.02f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.03f), _mm512_set1_ps(0.01f));
#define BENCH_DECL(i) __m512 c##i = _mm512_set1_ps(0.01f * (i));
#define BENCH_STEP(i) c##i = _mm512_dpbf16_ps(c##i, a, b);
#define BENCH_SUM(i) s = _mm512_add_ps(s, c##i);
  BENCH_CHAINS(BENCH_DECL)
  for (size_t it = 0; it < iters; ++it) {
    BENCH_CHAINS(BENCH_STEP)
  }
  __m512 s = _mm512_setzero_ps();
  BENCH_CHAINS(BENCH_SUM)
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  return sum_lanes(lanes, 16);
#undef BENCH_DECL
#undef BENCH_STEP
#undef BENCH_SUM
}

// tdpbf16ps: 4 independent 16 x 16 accumulator tiles, each += a 16 x 32 bf16 tile times a
// 32 x 16 one (16 * 16 * 32 * 2 flops per instruction). The tiles are configured per thread
// and released after; the process was granted their state by cpu_info() (cpu.cpp).
#if defined(__linux__)
struct alignas(64) AmxTileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
__attribute__((target("avx512f,amx-tile,amx-bf16"))) float amx_bf16_chains(size_t iters) {
  AmxTileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; ++i) cfg.rows[i] = 16, cfg.colsb[i] = 64;
  _tile_loadconfig(&cfg);
  alignas(64) uint16_t a[512], b[512];
  for (int i = 0; i < 512; ++i) a[i] = 0x3c00 + (i & 7), b[i] = 0x3c00 + (i & 3);  // small bf16 values
  alignas(64) float c[256];
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, a, 64);
  _tile_loadd(5, a, 64);
  _tile_loadd(6, b, 64);
  _tile_loadd(7, b, 64);
  for (size_t it = 0; it < iters; ++it) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0] + c[255];
}
#endif
#endif

bool has_feature(const char* name) {
  const auto& f = moe::cpu_info().features;
  return std::find(f.begin(), f.end(), name) != f.end();
}

// A peak kernel and the flops one of its loop iterations does (chains x lanes x flops/lane).
struct PeakKernel {
  float (*run)(size_t iters);
  const char* isa;
  double flops_per_iter;
};

// Fastest of kPasses passes in which `threads` threads run task(i) for i in [0, tasks), each
// taking the next task from a shared counter (one counter per pass: no reset between passes).
double fastest_pass(unsigned threads, size_t tasks, const std::function<void(size_t)>& task) {
  std::vector<std::atomic<size_t>> next(kPasses);
  for (auto& n : next) n = 0;
  const auto seconds = run_passes(threads, kPasses, [&](unsigned, int pass) {
    for (size_t i = next[pass]++; i < tasks; i = next[pass]++) task(i);
  });
  return *std::min_element(seconds.begin(), seconds.end());
}

double peak_gflops(const PeakKernel& k, unsigned threads) {
  const size_t tasks = threads * kPeakIterations / kPeakTaskIterations;
  const double seconds = fastest_pass(threads, tasks, [&](size_t) { g_sink = k.run(kPeakTaskIterations); });
  return tasks * kPeakTaskIterations * k.flops_per_iter / seconds / 1e9;
}

}  // namespace

std::vector<Limits> measure_limits(const std::vector<unsigned>& thread_counts) {
  using ReadKernel = float (*)(const float*, size_t);
  ReadKernel read = read_sum_generic;
  const char* read_isa = "generic";
  PeakKernel fma{fma_chains_generic, "generic", 2.0 * kChains};
  PeakKernel bf16{nullptr, "", 0};
#if defined(__x86_64__)
  if (has_feature("avx2") && has_feature("fma")) {
    read = read_sum_avx2, read_isa = "avx2";
    fma = {fma_chains_avx2, "avx2", 2.0 * 8 * kChains};
  }
  if (has_feature("avx512f")) {
    read = read_sum_avx512, read_isa = "avx512";
    fma = {fma_chains_avx512, "avx512", 2.0 * 16 * kChains};
  }
  if (has_feature("avx512bf16")) bf16 = {bf16_dot_chains_avx512, "avx512bf16", 4.0 * 16 * kChains};
  PeakKernel amx{nullptr, "", 0};
#if defined(__linux__)
  if (has_feature("amx-bf16")) amx = {amx_bf16_chains, "amx-bf16", 4.0 * 16 * 16 * 32 * 2};
#endif
#else
  PeakKernel amx{nullptr, "", 0};
#endif

  // One buffer for every thread count; written first (pages never written would all map to
  // the kernel's zero page and be read from cache).
  std::unique_ptr<float, void (*)(void*)> owner(static_cast<float*>(std::aligned_alloc(kHugePage, kReadBufferBytes)),
                                                std::free);
  float* buffer = owner.get();
  if (!buffer) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(buffer, kReadBufferBytes, MADV_HUGEPAGE);
#endif
  const size_t floats = kReadBufferBytes / sizeof(float);
  std::fill(buffer, buffer + floats, 1.0f);

  std::vector<Limits> out;
  for (unsigned threads : thread_counts) {
    Limits l;
    l.threads = threads;
    const size_t tasks = floats / kReadTaskFloats;
    const double seconds = fastest_pass(threads, tasks, [&](size_t i) { g_sink = read(buffer + i * kReadTaskFloats, kReadTaskFloats); });
    l.read_gbps = static_cast<double>(tasks * kReadTaskFloats * sizeof(float)) / seconds / 1e9;
    l.read_isa = read_isa;
    l.fma_gflops = peak_gflops(fma, threads);
    l.fma_isa = fma.isa;
    if (bf16.run) l.bf16_dot_gflops = peak_gflops(bf16, threads);
    if (amx.run) l.amx_bf16_gflops = peak_gflops(amx, threads);
    out.push_back(l);
  }
  return out;
}

}  // namespace bench
