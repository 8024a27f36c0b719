// How every native benchmark case is timed: one warm-up call, then an odd number of timed
// calls, and the median; plus a team of threads that runs a body in lock-step passes.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace bench {

double now_seconds();
double median(std::vector<double> values);

struct Timing {
  double median_ms = 0;
  int iters = 0;
  std::vector<double> ms;  // every timed call, in call order
};

// Warm-up once (pages in, wakes the pool), then `forced_iters` calls (made odd) or, if 0, as
// many as fit `budget_seconds` judging by the warm-up (between kMinIters and kMaxIters).
Timing time_median(const std::function<void()>& call, int forced_iters, double budget_seconds);

// Cold calls: `before()` runs untimed ahead of every call, warm-ups included (fresh routes and
// a cache sweep). Warm-up: at least kColdWarmups calls and at least `warmup_seconds`; then
// `forced_iters` calls (made odd) or, if 0, as many as fit `budget_seconds` judging by the
// last warm-up call (between min_iters and kMaxIters). `before(timed)` is told whether the
// call that follows is timed.
constexpr int kColdWarmups = 2;
Timing time_median_cold(const std::function<void(bool timed)>& before, const std::function<void()>& call,
                        int forced_iters, double budget_seconds, double warmup_seconds, int min_iters);

// Runs body(thread, pass) on `threads` threads for `passes` passes; every thread starts a
// pass together (spin barrier) and a pass ends when the slowest thread is done. Returns the
// wall time of each pass in seconds. Thread 0 is the calling thread.
std::vector<double> run_passes(unsigned threads, int passes,
                               const std::function<void(unsigned thread, int pass)>& body);

}  // namespace bench
