// launch.cpp: the local multi-rank launcher (launch.h).
#include "ebm/train/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "ebm/core/common.h"

namespace ebm {

int free_port(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  if (::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &a.sin_addr) != 1) {
    ::close(fd);
    throw UsageError("launch host must be an IPv4 address, got '" + host + "'");
  }
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string err = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("cannot find a free port on " + host + ": " + err);
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

namespace {

std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal.store(sig); }

std::string describe(const RankExit& e) {
  return e.signal ? "was killed by signal " + std::to_string(e.signal) + " (" + strsignal(e.signal) + ")"
                  : "exited with code " + std::to_string(e.code);
}

}  // namespace

LaunchResult launch(const LaunchOptions& o) {
  if (o.nprocs() < 1 || o.nprocs() > 64) throw UsageError("-n must be in 1..64, got " + std::to_string(o.nprocs()));
  if (o.command().empty()) throw UsageError("launch needs a command after `--`, e.g. `ebm launch -n 2 -- ebm train ...`");
  if (!(o.grace() >= 0)) throw UsageError("--grace must be >= 0 seconds, got " + std::to_string(o.grace()));
  if (o.port() < 0 || o.port() > 65535) throw UsageError("--port must be in 0..65535, got " + std::to_string(o.port()));
  const int port = o.port() > 0 ? o.port() : free_port(o.host());
  const std::string master = o.host() + ":" + std::to_string(port);

  // "ebm" means this very executable, so `build/ebm launch -- ebm train` needs no PATH.
  std::string exe = o.command()[0];
  if (exe == "ebm") {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) exe.assign(buf, size_t(n));
  }

  struct sigaction sa {}, old_int{}, old_term{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_signal.store(0);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  const int64_t w = o.nprocs();
  std::vector<pid_t> pids(size_t(w), -1);
  LaunchResult res;
  res.ranks.resize(size_t(w));
  for (int64_t r = 0; r < w; ++r) {
    std::vector<std::string> args = o.command();
    args[0] = exe;
    for (const std::string& s : {std::string("--world-size"), std::to_string(w), std::string("--rank"),
                                 std::to_string(r), std::string("--master"), master})
      args.push_back(s);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // The child gets default signal handling back before it becomes the rank.
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      std::vector<char*> argv;
      for (auto& s : args) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      std::fprintf(stderr, "ebm launch: rank %lld: cannot run '%s': %s\n", (long long)r, argv[0], std::strerror(errno));
      ::_exit(127);
    }
    pids[size_t(r)] = pid;
    res.ranks[size_t(r)].rank = r;
  }
  std::fprintf(stderr, "ebm launch: %lld ranks, rendezvous at %s\n", (long long)w, master.c_str());

  using clock = std::chrono::steady_clock;
  int64_t alive = w;
  bool failed = false, termed = false, killed = false;
  clock::time_point failed_at;
  int forwarded = 0;
  while (alive > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (int64_t r = 0; r < w; ++r) {
        if (pids[size_t(r)] != pid) continue;
        RankExit& e = res.ranks[size_t(r)];
        if (WIFSIGNALED(status)) {
          e.signal = WTERMSIG(status);
          e.code = 128 + e.signal;
        } else {
          e.code = WEXITSTATUS(status);
        }
        pids[size_t(r)] = -1;
        --alive;
        if (e.code != 0 && !failed) {
          failed = true;
          failed_at = clock::now();
          res.exit_code = e.code;
          res.message = "rank " + std::to_string(r) + " " + describe(e);
          if (alive > 0)
            std::fprintf(stderr, "ebm launch: %s; the other ranks get %.0f s to stop\n", res.message.c_str(),
                         o.grace());
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR && errno != ECHILD) break;
    const int sig = g_signal.exchange(0);
    if (sig != 0) {  // forward the user's signal to every rank
      forwarded = sig;
      for (pid_t p : pids)
        if (p > 0) ::kill(p, sig);
    }
    if (failed) {
      const double waited = std::chrono::duration<double>(clock::now() - failed_at).count();
      if (!termed && waited > o.grace()) {
        termed = true;
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGTERM);
      } else if (termed && !killed && waited > o.grace() + 5.0) {
        killed = true;
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (!failed && forwarded) {
    res.exit_code = 128 + forwarded;
    res.message = std::string("stopped by signal ") + std::to_string(forwarded);
  }
  return res;
}

}  // namespace ebm
