#include "timing.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace bench {

namespace {

// Fewest timed calls for a median worth quoting, and most (a fast case needs no more).
constexpr int kMinIters = 3;
constexpr int kMaxIters = 21;

// Threads wait here until all have arrived; reusable (the generation tells passes apart).
class SpinBarrier {
 public:
  explicit SpinBarrier(unsigned count) : count_(count) {}
  void wait() {
    const unsigned generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    while (generation_.load(std::memory_order_acquire) == generation) std::this_thread::yield();
  }

 private:
  const unsigned count_;
  std::atomic<unsigned> arrived_{0};
  std::atomic<unsigned> generation_{0};
};

}  // namespace

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

Timing time_median(const std::function<void()>& call, int forced_iters, double budget_seconds) {
  double t0 = now_seconds();
  call();
  const double warm = std::max(now_seconds() - t0, 1e-6);
  int iters = forced_iters > 0 ? forced_iters
                               : std::clamp(static_cast<int>(budget_seconds / warm), kMinIters, kMaxIters);
  iters |= 1;  // odd: the median is one of the samples
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    t0 = now_seconds();
    call();
    ms.push_back((now_seconds() - t0) * 1e3);
  }
  return {median(ms), iters, ms};
}

Timing time_median_cold(const std::function<void(bool)>& before, const std::function<void()>& call,
                        int forced_iters, double budget_seconds, double warmup_seconds, int min_iters) {
  double last = 1e-6;
  const double warm_start = now_seconds();
  for (int w = 0; w < kColdWarmups || now_seconds() - warm_start < warmup_seconds; ++w) {
    before(false);
    const double t0 = now_seconds();
    call();
    last = std::max(now_seconds() - t0, 1e-6);
  }
  int iters = forced_iters > 0 ? forced_iters
                               : std::clamp(static_cast<int>(budget_seconds / last), std::max(min_iters, kMinIters),
                                            std::max(kMaxIters, min_iters));
  iters |= 1;
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    before(true);
    const double t0 = now_seconds();
    call();
    ms.push_back((now_seconds() - t0) * 1e3);
  }
  return {median(ms), iters, ms};
}

std::vector<double> run_passes(unsigned threads, int passes,
                               const std::function<void(unsigned, int)>& body) {
  SpinBarrier barrier(threads);
  std::vector<double> seconds(passes);
  auto team_member = [&](unsigned thread) {
    for (int p = 0; p < passes; ++p) {
      barrier.wait();
      const double t0 = now_seconds();
      body(thread, p);
      barrier.wait();
      if (thread == 0) seconds[p] = now_seconds() - t0;
    }
  };
  std::vector<std::thread> others;
  for (unsigned t = 1; t < threads; ++t) others.emplace_back(team_member, t);
  team_member(0);
  for (auto& t : others) t.join();
  return seconds;
}

}  // namespace bench
