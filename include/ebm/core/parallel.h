// parallel.h: how a gradient pass over a batch uses the cores.
//
// LibTorch parallelises each operator over its intra-op threads (OpenMP). On
// the small images and networks ebmkit runs, that hand-off costs more than the
// work it splits. Measured on 2 cores with the shipped 28x28 conv energies:
//   - a batch-1 Langevin step ran 2.2 to 4 times as fast on 1 thread as on 2;
//   - two row shards, each on its own core with 1 intra-op thread, ran 2.1 to
//     4.6 times as many image-steps per second as the whole batch on 2
//     intra-op threads at batches 2 to 16 (median of 5 interleaved runs);
//   - cutting each shard into passes of 8 rows kept that lead at large
//     batches: inpainting's 320-row passes (16 chains x 20 images,
//     mnist-dsm-wide) went from 1.02 to 0.48 s per image, with identical
//     output; batch-256 Langevin steps ran at about 2,500 image-steps per
//     second in a spot check, against about 1,100 in the table before (the
//     machine's own spread is large: results/bench/bench.md).
// So energy_grad() (energy.h) splits any batch of 2 or more rows of a
// rows_independent() energy into one shard per thread, and runs each shard in
// passes of at most kShardPassRows rows on one intra-op thread. An energy that
// cannot be split runs whole: on the calling thread alone up to
// kSerialMaxRows rows, on its intra-op threads above. map_batched() (scoring,
// any function) never splits, and runs slices of up to kSerialMaxRows rows on
// the calling thread alone.
#pragma once

#include <cstdint>
#include <functional>

namespace ebm {

/// Rows up to which a pass that is not split runs on the calling thread alone
/// instead of on its intra-op threads (1 thread was ahead up to batch 8).
inline constexpr int64_t kSerialMaxRows = 8;

/// Rows per pass within a shard: 1 thread was as fast per row at batch 8 as
/// at any larger batch, and small passes keep activations in cache.
inline constexpr int64_t kShardPassRows = 8;

/// Intra-op threads for an unsharded pass over `rows` rows when the caller
/// has `threads` (>= 1): 1 up to kSerialMaxRows rows, else `threads`.
int intra_op_threads_for(int64_t rows, int threads);

/// Row shards for a pass over `rows` rows when the caller has `threads`
/// (>= 1): min(threads, rows), or 1 (no sharding) for fewer than 2 rows.
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
