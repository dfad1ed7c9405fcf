// batcher.h: the one scheduler under every serving endpoint. Dynamic
// micro-batching, as Triton's dynamic batcher does it:
//
//   submit(key, x[n,...], fn)  ->  future of fn's outputs for these n rows
//
// Requests with the same `key` are joined into one call of `fn` on the rows
// of all of them concatenated (dim 0), up to `max_batch` rows, waiting at most
// `max_delay_ms` after the oldest request arrived for others to join. Each
// caller gets back its own rows of every output. A key names an operation and
// every parameter that changes its result ("score:fmnist-ood",
// "denoise:fmnist-ood:tweedie:0.2"); work whose result must not depend on its
// batch-mates (seeded sampling) uses a key of its own per request.
//
// A fixed pool of `workers` threads runs the batches; each worker sets its own
// intra-op thread count (`threads_per_worker`). The queue holds at most
// `queue_capacity` requests: submit() throws QueueFull beyond that, which the
// HTTP layer turns into 503 + Retry-After. A request whose caller gave up
// (timeout) is dropped before it runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

namespace ebm::serve {

struct BatcherOptions {
  /// Rows per batch at most; a single request with more rows runs alone.
  TORCH_ARG(int64_t, max_batch) = 64;
  /// How long the oldest waiting request may wait for batch-mates.
  TORCH_ARG(double, max_delay_ms) = 2.0;
  /// Requests waiting or running at most; beyond it submit() throws QueueFull.
  TORCH_ARG(int64_t, queue_capacity) = 256;
  /// Worker threads, each running one batch at a time.
  TORCH_ARG(int, workers) = 1;
  /// Intra-op threads of each worker (torch::set_num_threads in the worker); >= 1.
  TORCH_ARG(int, threads_per_worker) = 1;
};

/// Throws std::invalid_argument naming the bad value.
void check_batcher_options(const BatcherOptions& o);

/// The queue is full; retry later.
struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// x: [N,...] -> outputs, each [N,...] (row i belongs to input row i).
using BatchFn = std::function<std::vector<torch::Tensor>(const torch::Tensor& x)>;

/// What a worker reports about each batch it ran (metrics).
struct BatchInfo {
  std::string key;
  int64_t rows = 0;
  int64_t requests = 0;
  double seconds = 0;
};

class Batcher {
 public:
  explicit Batcher(BatcherOptions o = {}, std::function<void(const BatchInfo&)> on_batch = {});
  /// Drains: every accepted request runs before the workers stop.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// One request: rows x [n,...] (n >= 1). Requests sharing a key must share
  /// fn's behaviour and x's trailing shape. The future holds fn's outputs for
  /// these rows, or the exception fn threw (every request of that batch gets it).
  /// `cancelled`, when given and set before the batch starts, drops the request.
  std::future<std::vector<torch::Tensor>> submit(const std::string& key, torch::Tensor x, BatchFn fn,
                                                 std::shared_ptr<std::atomic<bool>> cancelled = nullptr);

  /// Requests waiting (not yet in a running batch).
  int64_t queue_depth() const;
  /// Requests waiting or running.
  int64_t in_flight() const;
  const BatcherOptions& options() const { return o_; }
  /// Inside a BatchFn: the index of the worker running it (0..workers-1), so
  /// that a service can keep per-worker model copies; -1 on other threads.
  static int current_worker();

  /// Stop accepting (submit throws QueueFull), run what was accepted, join.
  void shutdown();

 private:
  struct Job {
    std::string key;
    torch::Tensor x;
    BatchFn fn;
    std::shared_ptr<std::atomic<bool>> cancelled;
    std::promise<std::vector<torch::Tensor>> promise;
    std::chrono::steady_clock::time_point arrived;
  };
  void worker_loop(int index);
  void run_batch(std::vector<std::unique_ptr<Job>>& jobs);

  BatcherOptions o_;
  std::function<void(const BatchInfo&)> on_batch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  int64_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ebm::serve
