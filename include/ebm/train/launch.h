// launch.h: start W local ranks of a data-parallel command and supervise them
// (what `ebm launch -n W -- ebm train ...` runs; torchrun's job for one machine).
//
// Each rank runs `command` with "--world-size W --rank r --master HOST:PORT"
// appended. The launcher forwards SIGINT and SIGTERM to every rank, and when a
// rank fails (non-zero exit or a signal) it gives the others `grace` seconds to
// stop by themselves (they see the lost peer as a DistributedError), then
// sends SIGTERM, and SIGKILL 5 s later: a launch never hangs on a dead rank.
#pragma once

#include <torch/arg.h>

#include <string>
#include <vector>

namespace ebm {

struct LaunchOptions {
  /// Number of local ranks.
  TORCH_ARG(int64_t, nprocs) = 2;
  /// Address rank 0 listens on; all ranks are local, so loopback.
  TORCH_ARG(std::string, host) = "127.0.0.1";
  /// Rendezvous port; 0 = a free port chosen by the kernel.
  TORCH_ARG(int, port) = 0;
  /// Seconds the other ranks get to exit after one fails.
  TORCH_ARG(double, grace) = 45.0;
  /// The command of every rank (argv; argv[0] "ebm" means this executable).
  TORCH_ARG(std::vector<std::string>, command) = std::vector<std::string>{};
};

/// What happened to one rank.
struct RankExit {
  int64_t rank = 0;
  int code = 0;    ///< exit status, or 128 + signal
  int signal = 0;  ///< the signal that ended it (0 = it exited)
};

struct LaunchResult {
  std::vector<RankExit> ranks;  ///< in rank order
  /// 0 when every rank exited 0; else the first failing rank's code.
  int exit_code = 0;
  /// One line naming the first failure ("" on success).
  std::string message;
};

/// A free TCP port on `host` (bound and released; another process could take
/// it in between, which the rendezvous then reports).
int free_port(const std::string& host);

/// Run the ranks to completion. UsageError for a bad option or an empty command.
LaunchResult launch(const LaunchOptions& o);

}  // namespace ebm
