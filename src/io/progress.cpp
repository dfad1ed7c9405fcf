#include "ebm/io/progress.h"

#include <unistd.h>

#include <cstdio>

namespace ebm {
namespace {
bool g_quiet = false;
}

void Progress::set_quiet(bool q) { g_quiet = q; }

Progress::Progress(std::string label, int64_t total, double interval_s, int64_t start)
    : label_(std::move(label)), total_(total), interval_(interval_s), tty_(::isatty(2) == 1),
      start_(std::chrono::steady_clock::now()), last_(start_), done_(start), start_units_(start) {}

Progress::~Progress() {
  if (tty_ && !finished_ && !g_quiet && done_ > 0) std::fputc('\n', stderr);
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  if (g_quiet) return;
  auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  if (tty_ ? since < 0.1 : since < interval_) return;
  last_ = now;
  const double rate = elapsed > 0 ? double(done - start_units_) / elapsed : 0;
  const double eta = (total_ > 0 && rate > 0) ? (total_ - done) / rate : 0;
  if (tty_) {
    const int width = 24;
    int filled = total_ > 0 ? int(width * double(done) / double(total_)) : 0;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %.1f/s eta %.0fs %s", label_.c_str(), bar.c_str(),
                 (long long)done, (long long)total_, rate, eta, status.c_str());
  } else {
    std::fprintf(stderr, "%s: %lld/%lld (%.1f/s, %.0fs elapsed, eta %.0fs) %s\n", label_.c_str(),
                 (long long)done, (long long)total_, rate, elapsed, eta, status.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (g_quiet) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "%s%s: done %lld in %.1fs %s\n", tty_ ? "\r\033[K" : "", label_.c_str(),
               (long long)(total_ > 0 ? total_ : done_), elapsed, status.c_str());
  std::fflush(stderr);
}

}  // namespace ebm
