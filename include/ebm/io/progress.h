// progress.h: progress reporting for long work (training, sampling, evaluation).
// On a TTY it redraws one bar on stderr; otherwise it prints a plain line at
// most every `interval_s` seconds. Nothing ever goes to stdout, so `--json -`
// output stays clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ebm {

class Progress {
 public:
  /// label: what is running; total: number of units (0 = unknown); start: units
  /// already done before this process (a resumed run), excluded from the rate.
  Progress(std::string label, int64_t total, double interval_s = 10.0, int64_t start = 0);
  ~Progress();
  /// Report `done` units; `status` is appended (e.g. "loss 0.12").
  void update(int64_t done, const std::string& status = "");
  /// Print the final line (idempotent).
  void finish(const std::string& status = "");
  /// Silence all output (e.g. for --quiet).
  static void set_quiet(bool q);

 private:
  std::string label_;
  int64_t total_;
  double interval_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  int64_t done_ = 0, start_units_ = 0;
};

}  // namespace ebm
