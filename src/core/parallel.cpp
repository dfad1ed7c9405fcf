#include "ebm/core/parallel.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ebm {

namespace {
// OpenMP's per-thread setter, looked up in the process: LibTorch loaded the
// OpenMP runtime it was built with, and that runtime's nthreads-var is what
// ATen's and oneDNN's parallel loops read. Null without OpenMP (then the
// guard does nothing, and LibTorch's own threading stays as it is).
using OmpSetFn = void (*)(int);
OmpSetFn omp_set_fn() {
  static const auto fn = reinterpret_cast<OmpSetFn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  return fn;
}

// One worker thread that runs one task at a time on 1 intra-op thread.
class Worker {
 public:
  Worker() : thread_([this] { loop(); }) {}
  // The pool lives until the process exits (never destroyed), as LibTorch's
  // own thread pools do: joining at static destruction could race LibTorch's.
  void start(std::function<void()> task) {
    std::lock_guard<std::mutex> lk(mu_);
    task_ = std::move(task);
    done_ = false;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_; });
  }

 private:
  void loop() {
    at::get_num_threads();  // LibTorch's per-thread lazy init first, so it cannot undo the next line
    if (omp_set_fn()) omp_set_fn()(1);
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return bool(task_); });
      auto task = std::move(task_);
      task_ = nullptr;
      lk.unlock();
      task();
      lk.lock();
      done_ = true;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> task_;
  bool done_ = true;
  std::thread thread_;
};

struct Pool {
  std::mutex busy;  // held by the one run_shards call using (and growing) the workers
  std::vector<std::unique_ptr<Worker>> workers;
};
Pool& pool() {
  static auto* p = new Pool;  // never destroyed, see Worker
  return *p;
}
}  // namespace

int intra_op_threads_for(int64_t rows, int threads) {
  TORCH_CHECK(threads >= 1, "intra_op_threads_for: threads must be >= 1, got ", threads);
  return rows <= kSerialMaxRows ? 1 : threads;
}

int shards_for(int64_t rows, int threads) {
  TORCH_CHECK(threads >= 1, "shards_for: threads must be >= 1, got ", threads);
  return rows < 2 ? 1 : int(std::min<int64_t>(threads, rows));
}

RowRange shard_rows(int64_t rows, int n, int i) {
  TORCH_CHECK(n >= 1 && n <= rows && i >= 0 && i < n, "shard_rows: need 0 <= i < n <= rows, got i = ", i, ", n = ", n,
              ", rows = ", rows);
  const int64_t base = rows / n, extra = rows % n;
  return {i * base + std::min<int64_t>(i, extra), base + (i < extra ? 1 : 0)};
}

ScopedIntraOpThreads::ScopedIntraOpThreads(int n) : saved_(at::get_num_threads()) {
  TORCH_CHECK(n >= 1, "ScopedIntraOpThreads: n must be >= 1, got ", n);
  if (n != saved_ && omp_set_fn()) omp_set_fn()(n);
}

ScopedIntraOpThreads::~ScopedIntraOpThreads() {
  if (at::get_num_threads() != saved_ && omp_set_fn()) omp_set_fn()(saved_);
}

bool run_shards(int n, const std::function<void(int)>& fn) {
  TORCH_CHECK(n >= 1, "run_shards: n must be >= 1, got ", n);
  if (n == 1) {
    fn(0);
    return true;
  }
  Pool& p = pool();
  std::unique_lock<std::mutex> busy(p.busy, std::try_to_lock);
  if (!busy.owns_lock()) return false;
  while (int(p.workers.size()) < n - 1) p.workers.push_back(std::make_unique<Worker>());
  const at::ThreadLocalState state;  // grad mode, inference mode, dispatch keys of the caller
  std::vector<std::exception_ptr> errors(n);
  for (int i = 1; i < n; ++i)
    p.workers[i - 1]->start([&, i] {
      try {
        at::ThreadLocalStateGuard guard(state);
        fn(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    });
  try {
    ScopedIntraOpThreads one(1);
    fn(0);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (int i = 1; i < n; ++i) p.workers[i - 1]->wait();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
  return true;
}

}  // namespace ebm
