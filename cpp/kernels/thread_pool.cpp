#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "moe_cpu.h"

namespace moe {

namespace {

// More workers than this is a configuration error, not a wish we can honour usefully.
constexpr unsigned kMaxThreads = 256;

// A forward is three jobs back to back: between them workers (and the caller, at a job's end)
// spin this long before sleeping on the condition variable, as a wake-up through the kernel
// costs tens of microseconds in a VM, several times over a 1 ms decode on 16 cores.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

// Spins until done() or kSpin has passed; says which.
template <typename Done>
bool spin_until(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return false;
  }
}

}  // namespace

struct ThreadPool::State {
  std::mutex run_mutex;  // one job at a time

  std::mutex mutex;  // guards everything below
  std::condition_variable job_ready;
  std::condition_variable job_done;
  std::vector<std::thread> workers;
  unsigned long long generation = 0;  // bumped for every job
  std::atomic<unsigned long long> published{0};  // generation, readable without the mutex (spinning)
  std::atomic<unsigned> remaining{0};            // busy, readable without the mutex
  const std::function<void(size_t, unsigned)>* task = nullptr;
  size_t count = 0;
  unsigned wanted = 0;  // workers (besides the caller) taking part in the current job
  unsigned busy = 0;    // workers still inside the current job
  std::atomic<size_t> next{0};
  std::exception_ptr error;

  void drain(unsigned slot) {
    for (;;) {
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) return;
      try {
        (*task)(i, slot);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        next.store(count, std::memory_order_relaxed);  // stop handing out tasks
      }
    }
  }

  void worker_loop(unsigned index) {
    unsigned long long seen = 0;
    for (;;) {
      spin_until([&] { return published.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lock(mutex);
        job_ready.wait(lock, [&] { return generation != seen; });
        seen = generation;
        if (index >= wanted) continue;  // not part of this job
      }
      drain(index + 1);
      std::lock_guard<std::mutex> lock(mutex);
      remaining.fetch_sub(1, std::memory_order_release);
      if (--busy == 0) job_done.notify_one();
    }
  }
};

ThreadPool::ThreadPool() : state_(new State) {}

ThreadPool& ThreadPool::shared() {
  // Deliberately never destroyed: workers may still be parked in wait() when static
  // destructors run at process exit, and joining them there could deadlock.
  static ThreadPool* pool = new ThreadPool;
  return *pool;
}

void ThreadPool::run(size_t count, unsigned threads, const std::function<void(size_t)>& task) {
  run_slots(count, threads, [&task](size_t i, unsigned) { task(i); });
}

void ThreadPool::run_slots(size_t count, unsigned threads, const std::function<void(size_t, unsigned)>& task) {
  if (count == 0) return;
  unsigned helpers = std::min<unsigned>(std::max(threads, 1u), kMaxThreads) - 1;
  helpers = static_cast<unsigned>(std::min<size_t>(helpers, count - 1));
  if (helpers == 0) {
    for (size_t i = 0; i < count; ++i) task(i, 0);
    return;
  }
  State& s = *state_;
  std::lock_guard<std::mutex> run_lock(s.run_mutex);
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    while (s.workers.size() < helpers) {
      unsigned index = static_cast<unsigned>(s.workers.size());
      s.workers.emplace_back([&s, index] { s.worker_loop(index); });
    }
    s.task = &task;
    s.count = count;
    s.next.store(0, std::memory_order_relaxed);
    s.error = nullptr;
    s.wanted = helpers;
    s.busy = helpers;
    s.remaining.store(helpers, std::memory_order_relaxed);
    ++s.generation;
    s.published.store(s.generation, std::memory_order_release);
  }
  s.job_ready.notify_all();
  s.drain(0);
  spin_until([&] { return s.remaining.load(std::memory_order_acquire) == 0; });
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.job_done.wait(lock, [&] { return s.busy == 0; });
    s.task = nullptr;
    error = s.error;
  }
  if (error) std::rethrow_exception(error);
}

unsigned physical_core_count() {
  static const unsigned cores = [] {
    unsigned logical = std::max(1u, std::thread::hardware_concurrency());
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return logical;
    logical = std::max(1, CPU_COUNT(&set));
    // SMT siblings share a core's FMA units: count each core once.
    std::set<std::string> cores_seen;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      std::ifstream siblings("/sys/devices/system/cpu/cpu" + std::to_string(cpu) +
                             "/topology/thread_siblings_list");
      std::string list;
      if (!(siblings >> list)) return logical;
      cores_seen.insert(list);
    }
    return std::max(1u, static_cast<unsigned>(cores_seen.size()));
#else
    return logical;
#endif
  }();
  return cores;
}

}  // namespace moe
