// parallel.h: how a pass over a small batch uses the cores.
//
// LibTorch parallelises each operator over its intra-op threads (OpenMP). On
// the small images and networks ebmkit runs, that hand-off costs more than the
// work it splits when a batch is small. Measured on 2 cores (a Langevin step of
// the shipped 28x28 conv energy, median of 5 interleaved runs):
//   batch 1:      1 thread ran 2.2 to 4 times as many steps per second as 2;
//   batch 2..16:  two row shards, each on its own core with 1 intra-op thread,
//                 ran 2.1 to 4.6 times as many image-steps per second as the
//                 whole batch on 2 intra-op threads;
//   batch 32+:    the two were level, so large batches keep intra-op threads.
// The rules below are applied in one place each: energy_grad() shards,
// map_batched() runs small slices serially (energy.h).
#pragma once

#include <cstdint>
#include <functional>

namespace ebm {

/// Rows up to which a pass that cannot be sharded runs on the calling thread
/// alone instead of on its intra-op threads (1 thread was ahead up to batch 8).
inline constexpr int64_t kSerialMaxRows = 8;

/// Rows up to which energy_grad() splits the batch into one row shard per
/// thread (2 shards were 2.1x ahead at batch 16, level at 32).
inline constexpr int64_t kShardMaxRows = 16;

/// Intra-op threads for an unsharded pass over `rows` rows when the caller
/// has `threads` (>= 1): 1 up to kSerialMaxRows rows, else `threads`.
int intra_op_threads_for(int64_t rows, int threads);

/// Row shards for a pass over `rows` rows when the caller has `threads`
/// (>= 1): min(threads, rows) for 2..kShardMaxRows rows, else 1 (no sharding).
int shards_for(int64_t rows, int threads);

/// The rows [begin, begin + length) of shard i of n over `rows` rows: the
/// first rows % n shards get one row more. 0 <= i < n <= rows.
struct RowRange {
  int64_t begin, length;
};
RowRange shard_rows(int64_t rows, int n, int i);

/// Sets the calling thread's intra-op thread count (OpenMP's nthreads-var,
/// which ATen, oneDNN and OpenBLAS read per call) for its scope and restores
/// it on exit. Unlike at::set_num_threads it leaves LibTorch's global default
/// and oneDNN's primitive cache alone, so it is cheap enough to wrap every
/// pass. n >= 1.
class ScopedIntraOpThreads {
 public:
  explicit ScopedIntraOpThreads(int n);
  ~ScopedIntraOpThreads();
  ScopedIntraOpThreads(const ScopedIntraOpThreads&) = delete;
  ScopedIntraOpThreads& operator=(const ScopedIntraOpThreads&) = delete;

 private:
  int saved_;
};

/// Run fn(0), ..., fn(n-1) at once: fn(0) on the calling thread, the others on
/// a process-wide pool of worker threads, each call with 1 intra-op thread and
/// the caller's thread-local LibTorch state (grad mode and the like). Returns
/// when all have finished, rethrowing the first exception. Returns false, and
/// runs nothing, when the pool is already in use (a concurrent or nested call):
/// the caller then does the work itself. n >= 1; n = 1 runs fn(0) here.
bool run_shards(int n, const std::function<void(int)>& fn);

}  // namespace ebm
