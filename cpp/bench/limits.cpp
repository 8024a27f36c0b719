// The kernels here are compiled for AVX2 / AVX-512 by target attributes, which is fine in a
// benchmark binary: each is called only after cpu_info() says the CPU and OS support it, and
// they use raw pointers and intrinsics only (no inline library code is compiled twice).
#include "limits.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

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
constexpr size_t kReadChunk = 128;
// Independent accumulator chains: enough to cover FMA latency x throughput (4 x 2 on Zen 4,
// 4 x 2 on Intel cores), few enough to stay in registers (16 ymm on AVX2).
#define BENCH_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
constexpr int kChains = 12;
// Loop iterations of a peak kernel per pass: ~15 ms of FMAs on a 3-4 GHz core.
constexpr size_t kPeakIterations = size_t{1} << 22;
constexpr int kPasses = 7;

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
  for (size_t i = 0; i < n; i += kReadChunk) {
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
#endif

// A limit is what the machine can do: other processes can only slow a pass down, so the
// fastest pass is the estimate (the cases, judged against it, quote medians).
double fastest(const std::vector<double>& seconds) { return *std::min_element(seconds.begin(), seconds.end()); }

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

double peak_gflops(const PeakKernel& k, unsigned threads) {
  const auto seconds = run_passes(threads, kPasses, [&](unsigned, int) { g_sink = k.run(kPeakIterations); });
  return threads * k.flops_per_iter * kPeakIterations / fastest(seconds) / 1e9;
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
#endif

  // One buffer for every thread count; written first (pages never written would all map to
  // the kernel's zero page and be read from cache).
  float* buffer = static_cast<float*>(std::aligned_alloc(kHugePage, kReadBufferBytes));
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
    // Each thread streams its own contiguous slice (a multiple of kReadChunk floats).
    const size_t slice = floats / threads / kReadChunk * kReadChunk;
    const auto seconds = run_passes(threads, kPasses, [&](unsigned t, int) {
      g_sink = read(buffer + t * slice, slice);
    });
    l.read_gbps = static_cast<double>(slice) * threads * sizeof(float) / fastest(seconds) / 1e9;
    l.read_isa = read_isa;
    l.fma_gflops = peak_gflops(fma, threads);
    l.fma_isa = fma.isa;
    if (bf16.run) l.bf16_dot_gflops = peak_gflops(bf16, threads);
    out.push_back(l);
  }
  std::free(buffer);
  return out;
}

}  // namespace bench
