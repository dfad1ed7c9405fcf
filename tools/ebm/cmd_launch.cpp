// ebm launch -n W -- ebm train ...: W local data-parallel ranks (train/launch.h).
#include <cstdio>

#include "cli.h"
#include "ebm/train/launch.h"

namespace ebm::cli {

void add_launch(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "launch",
      "Run W local ranks of a data-parallel command (c10d/Gloo): each gets --world-size W --rank r\n"
      "--master HOST:PORT appended; signals are forwarded; a failed rank stops the rest");
  static LaunchOptions o;
  static std::vector<std::string> command;
  sub->add_option("-n,--nprocs", o.nprocs(), "Number of ranks on this machine")->capture_default_str();
  sub->add_option("--port", o.port(), "Rendezvous port on 127.0.0.1 (0 = any free port)")->capture_default_str();
  sub->add_option("--grace", o.grace(), "Seconds the other ranks get to stop after one fails, before SIGTERM")
      ->capture_default_str();
  sub->add_option("command", command, "The rank command, after `--` (\"ebm\" = this executable)")->required();
  sub->footer(
      "Each rank trains on --batch / W rows of every global batch; gradients are averaged, so W ranks\n"
      "follow one process's trajectory. Give each rank --threads 1 on a 2-core machine. Several\n"
      "machines: run `ebm train ... --world-size W --rank r --master HOST:PORT` on each (docs/distributed.md).\n"
      "Exit code: 0 when every rank succeeds, else the first failing rank's code (128+signal if killed).\n\n"
      "Example: ebm launch -n 2 -- ebm train --task clf --data mnist --batch 64 --steps 500 --threads 1 --out m");
  sub->callback([&run] {
    run = [] {
      o.command(command);
      const LaunchResult r = launch(o);
      if (r.exit_code != 0) std::fprintf(stderr, "ebm launch: error: %s\n", r.message.c_str());
      return r.exit_code;
    };
  });
}

}  // namespace ebm::cli
