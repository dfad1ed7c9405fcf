// distributed.h: data-parallel training on LibTorch's own distributed engine,
// c10d: a TCPStore rendezvous at rank 0's HOST:PORT and a ProcessGroupGloo
// (TCP) for the collectives. The c10d headers stay inside distributed.cpp.
//
// How train() uses it (train.h, "Data parallelism"):
//   - every rank starts from rank 0's weights (broadcast);
//   - after each backward pass the parameter gradients are averaged across
//     ranks (average_gradients: flattened into buckets, one all-reduce each);
//   - the divergence guard's inputs are reduced (max) so that all ranks roll
//     back together or not at all;
//   - at a checkpoint every rank's replay buffer and generator state are
//     gathered so that rank 0 alone writes one checkpoint that resumes all.
// A peer that dies makes the next collective fail (connection closed) or time
// out after `timeout` seconds; either way a DistributedError names the rank.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ebm {

/// A rank was lost, the rendezvous failed, or a collective timed out (CLI exit code 1).
struct DistributedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct DistOptions {
  /// Number of processes; 1 = no process group at all (the plain trainer).
  TORCH_ARG(int64_t, world_size) = 1;
  /// This process's rank in [0, world_size).
  TORCH_ARG(int64_t, rank) = 0;
  /// HOST:PORT of rank 0's TCPStore (rank 0 listens there). Required when world_size > 1.
  TORCH_ARG(std::string, master) = "";
  /// Seconds to wait for the rendezvous and for any one collective before
  /// giving up with a DistributedError (a dead peer is usually seen at once,
  /// as a closed connection; the timeout covers a peer that hangs).
  TORCH_ARG(double, timeout) = 30.0;
  /// Gradient bucket size in bytes: gradients are flattened into buckets of at
  /// most this size, and each bucket is one all-reduce (fewer, larger messages).
  TORCH_ARG(int64_t, bucket_bytes) = 4 << 20;
};

/// Parse "HOST:PORT"; UsageError naming the value otherwise.
std::pair<std::string, int> parse_master(const std::string& master);

/// Validate options (ranges, master address) with UsageErrors that name the flag.
void check_dist_options(const DistOptions& o);

/// One process's membership of a data-parallel group. With world_size 1 every
/// collective is the identity and nothing is opened.
class Communicator {
 public:
  explicit Communicator(const DistOptions& o);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int64_t rank() const { return o_.rank(); }
  int64_t world_size() const { return o_.world_size(); }
  bool distributed() const { return o_.world_size() > 1; }

  /// Average the .grad() of `params` across ranks in place (sum / world_size),
  /// bucketed by bucket_bytes. Parameters without a gradient take part as zeros
  /// so that every rank sends the same buckets. Returns the seconds spent.
  double average_gradients(const std::vector<torch::Tensor>& params);
  /// Overwrite every rank's tensors with rank 0's values (in place, no grad).
  void broadcast(const std::vector<torch::Tensor>& tensors);
  /// Element-wise maximum of `v` (float64 [n]) across ranks.
  torch::Tensor max(const torch::Tensor& v);
  /// Element-wise sum of `v` (float64 [n]) across ranks.
  torch::Tensor sum(const torch::Tensor& v);
  /// Every rank's `t` (same shape and dtype on every rank) stacked: [world_size, ...].
  torch::Tensor allgather(const torch::Tensor& t);
  /// Wait for every rank.
  void barrier();

  /// Seconds spent averaging gradients so far (packing, all-reduce, unpacking),
  /// and how many times.
  double grad_seconds() const { return grad_seconds_; }
  int64_t grad_reductions() const { return grad_reductions_; }

 private:
  struct Impl;
  DistOptions o_;
  std::unique_ptr<Impl> impl_;
  double grad_seconds_ = 0;
  int64_t grad_reductions_ = 0;
};

}  // namespace ebm
