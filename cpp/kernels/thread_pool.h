// Persistent native worker threads shared by every layer of the process.
//
// Not libuv's pool (4 threads, shared with file I/O) and not OpenMP (its runtime cannot be
// shipped inside a prebuilt addon portably). Workers are started on first use and grown on
// demand up to the largest thread count asked for; they live until the process exits.
#pragma once

#include <cstddef>
#include <functional>

namespace moe {

class ThreadPool {
 public:
  static ThreadPool& shared();

  // Runs task(i) for every i in [0, count) on up to `threads` threads, the calling thread
  // being one of them, and returns when all are done. Tasks are handed out dynamically, so
  // results must not depend on which thread runs which task. Calls from several threads at
  // once are serialised (each call wants every core anyway). The first exception thrown by a
  // task is rethrown here after all tasks have stopped.
  void run(size_t count, unsigned threads, const std::function<void(size_t)>& task);
  // The same, telling each task which of the job's threads runs it: a slot in
  // [0, min(threads, count)), 0 being the calling thread, so a job can give each thread its
  // own scratch, allocated once per job instead of once per task.
  void run_slots(size_t count, unsigned threads, const std::function<void(size_t task, unsigned slot)>& task);

  struct State;

 private:
  ThreadPool();
  State* state_;
};

}  // namespace moe
