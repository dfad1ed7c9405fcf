#include "ebm/serve/batcher.h"

#include <torch/torch.h>

namespace ebm::serve {

namespace {
thread_local int t_worker = -1;
}

int Batcher::current_worker() { return t_worker; }

void check_batcher_options(const BatcherOptions& o) {
  auto bad = [](const std::string& what, const std::string& v) {
    throw std::invalid_argument("batcher: " + what + " must be positive, got " + v);
  };
  if (o.max_batch() < 1) bad("max_batch", std::to_string(o.max_batch()));
  if (!(o.max_delay_ms() >= 0)) throw std::invalid_argument("batcher: max_delay_ms must be >= 0, got " + std::to_string(o.max_delay_ms()));
  if (o.queue_capacity() < 1) bad("queue_capacity", std::to_string(o.queue_capacity()));
  if (o.workers() < 1) bad("workers", std::to_string(o.workers()));
  if (o.threads_per_worker() < 1) bad("threads_per_worker", std::to_string(o.threads_per_worker()));
}

Batcher::Batcher(BatcherOptions o, std::function<void(const BatchInfo&)> on_batch)
    : o_(std::move(o)), on_batch_(std::move(on_batch)) {
  check_batcher_options(o_);
  for (int i = 0; i < o_.workers(); ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

Batcher::~Batcher() { shutdown(); }

void Batcher::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
  workers_.clear();
}

std::future<std::vector<torch::Tensor>> Batcher::submit(const std::string& key, torch::Tensor x, BatchFn fn,
                                                        std::shared_ptr<std::atomic<bool>> cancelled) {
  TORCH_CHECK(x.defined() && x.dim() >= 1 && x.size(0) >= 1, "batcher: a request needs at least one row");
  auto job = std::make_unique<Job>();
  job->key = key;
  job->x = std::move(x);
  job->fn = std::move(fn);
  job->cancelled = std::move(cancelled);
  job->arrived = std::chrono::steady_clock::now();
  auto fut = job->promise.get_future();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw QueueFull("the server is shutting down");
    if (int64_t(queue_.size()) + running_ >= o_.queue_capacity())
      throw QueueFull("queue full (" + std::to_string(o_.queue_capacity()) + " requests)");
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
  return fut;
}

int64_t Batcher::queue_depth() const {
  std::lock_guard<std::mutex> lk(mu_);
  return int64_t(queue_.size());
}

int64_t Batcher::in_flight() const {
  std::lock_guard<std::mutex> lk(mu_);
  return int64_t(queue_.size()) + running_;
}

void Batcher::worker_loop(int index) {
  t_worker = index;
  // Intra-op threads are per calling thread (OpenMP's nthreads-var), so each
  // worker sets its own share of the cores.
  torch::set_num_threads(o_.threads_per_worker());
  const auto delay = std::chrono::microseconds(int64_t(o_.max_delay_ms() * 1000.0));
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    // Wait for batch-mates of the oldest request until its deadline or a full batch.
    const std::string key = queue_.front()->key;
    const auto deadline = queue_.front()->arrived + delay;
    auto rows_waiting = [&] {
      int64_t r = 0;
      for (const auto& j : queue_)
        if (j->key == key) r += j->x.size(0);
      return r;
    };
    while (!stopping_ && rows_waiting() < o_.max_batch() && std::chrono::steady_clock::now() < deadline) {
      cv_.wait_until(lk, deadline);
      if (queue_.empty() || queue_.front()->key != key) break;  // another worker took it
    }
    if (queue_.empty() || queue_.front()->key != key) continue;
    // Take the oldest request and every same-key request that still fits.
    std::vector<std::unique_ptr<Job>> jobs;
    int64_t rows = 0;
    for (auto it = queue_.begin(); it != queue_.end();) {
      const int64_t n = (*it)->x.size(0);
      if ((*it)->key == key && (jobs.empty() || rows + n <= o_.max_batch())) {
        rows += n;
        jobs.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    running_ += int64_t(jobs.size());
    lk.unlock();
    run_batch(jobs);  // frees the jobs' queue slots before answering them
    lk.lock();
  }
}

void Batcher::run_batch(std::vector<std::unique_ptr<Job>>& jobs) {
  // A caller may send its next request the moment it has its answer, so the
  // slots are released before any promise is fulfilled.
  const int64_t taken = int64_t(jobs.size());
  auto release = [this, taken] {
    std::lock_guard<std::mutex> lk(mu_);
    running_ -= taken;
  };
  std::vector<std::unique_ptr<Job>> live;
  for (auto& j : jobs) {
    if (j->cancelled && j->cancelled->load()) {
      j->promise.set_exception(std::make_exception_ptr(std::runtime_error("cancelled")));
      continue;
    }
    live.push_back(std::move(j));
  }
  if (live.empty()) {
    release();
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor x;
  std::vector<torch::Tensor> outs;
  try {
    std::vector<torch::Tensor> xs;
    for (const auto& j : live) xs.push_back(j->x);
    x = xs.size() == 1 ? xs[0] : torch::cat(xs, 0);
    outs = live.front()->fn(x);
    for (const auto& o : outs)
      TORCH_CHECK(o.defined() && o.dim() >= 1 && o.size(0) == x.size(0),
                  "batcher: an output has ", (o.defined() && o.dim() >= 1 ? o.size(0) : -1), " rows for ", x.size(0),
                  " input rows");
  } catch (...) {
    release();
    for (auto& j : live) j->promise.set_exception(std::current_exception());
    return;
  }
  release();
  // The batch is reported before any caller gets its rows: whoever reads the
  // metrics after an answer sees that answer's batch counted.
  if (on_batch_)
    on_batch_({live.front()->key, x.size(0), int64_t(live.size()),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
  int64_t start = 0;
  for (auto& j : live) {
    const int64_t n = j->x.size(0);
    std::vector<torch::Tensor> mine;
    for (const auto& o : outs) mine.push_back(o.narrow(0, start, n));
    start += n;
    j->promise.set_value(std::move(mine));
  }
}

}  // namespace ebm::serve
