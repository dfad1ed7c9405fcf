#include "ebm/serve/http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include <httplib.h>
#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/serve/framing.h"

namespace ebm::serve {

// ---------------------------------------------------------------- connections
//
// cpp-httplib gives each connection a pool thread for as long as it is open: a
// keep-alive client that says nothing holds one until its timeout, so a few
// hundred idle connections stall every other client (measured: 1,000 idle
// connections and a new request unanswered after 12 s). Here a pool thread
// only ever runs a request that has fully arrived:
//
//  - an accepted connection, and every connection after its answer, is parked
//    in one epoll set (the Parker thread);
//  - the Parker reads what arrives, without blocking, until the buffer holds a
//    whole request (head and Content-Length body); then a pool thread runs it
//    through httplib's own process_request() on a Stream over that buffer;
//  - an idle connection is closed after keep_alive_timeout_ms; a request that
//    has not fully arrived within request_timeout_ms of its first byte gets 408
//    and is closed (slow or short bodies never reach a thread);
//  - at max_connections a new connection evicts the longest-idle one, or gets
//    503 when none is idle.
// "Whole" follows the request's framing (framing.h): Content-Length bodies and
// chunked bodies are both awaited here. The Parker answers "Expect:
// 100-continue" itself, and refuses on the spot (answer, lingering close, no thread)
// what no thread should wait for: a declared body over the limit (413), a head
// over 64 KiB (431), broken framing (400), another expectation (417).

namespace {

using Clock = std::chrono::steady_clock;

std::string raw_response(int status, const char* reason, const std::string& message, const std::string& extra = "") {
  // replace: a message is never allowed to throw here (invalid UTF-8 becomes U+FFFD).
  const std::string body = json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
  return "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra + "\r\n" + body;
}

// Best effort: the connection is closed right after.
void send_now(int fd, const std::string& s) {
  size_t off = 0;
  for (int spins = 0; off < s.size() && spins < 100; ++spins) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) off += size_t(n);
    else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 10);
    } else break;
  }
}

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    default: return "Error";
  }
}

// The longest request head (request line and header fields) the Parker waits for.
constexpr size_t kMaxHead = 64 * 1024;

}  // namespace

struct Conn {
  int fd = -1;
  std::string buf;     // bytes read and not yet consumed
  size_t pos = 0;      // first unconsumed byte of buf
  bool parked = false;  // in the Parker's set (only the Parker deletes a parked Conn)
  bool timed_out = false;  // a blocking read ran past the request deadline
  Clock::time_point idle_since, request_started;
  bool request_pending = false;  // some bytes of the next request have arrived
  bool evicting = false;         // shut down to make room; the Parker closes it
  ChunkScan scan;                // how far a chunked body has been read (framing.h)
  bool draining = false;         // refused and answered: input is read and dropped until EOF (lingering close)
  size_t pending() const { return buf.size() - pos; }
  void compact() {
    if (pos > 0) {
      buf.erase(0, pos);
      pos = 0;
    }
  }
};

// httplib's Stream over a Conn: reads come from the buffer first, then from the
// socket with poll() bounded by the request deadline.
class ConnStream : public httplib::Stream {
 public:
  ConnStream(Conn& c, Clock::time_point deadline, int write_timeout_ms)
      : c_(c), deadline_(deadline), write_timeout_ms_(write_timeout_ms) {}
  bool is_readable() const override { return c_.pending() > 0 || wait(POLLIN, remaining_ms()); }
  bool is_writable() const override { return wait(POLLOUT, write_timeout_ms_); }
  ssize_t read(char* ptr, size_t size) override {
    if (c_.pending() > 0) {
      const size_t n = std::min(size, c_.pending());
      std::memcpy(ptr, c_.buf.data() + c_.pos, n);
      c_.pos += n;
      return ssize_t(n);
    }
    for (;;) {
      const int ms = remaining_ms();
      if (ms <= 0 || !wait(POLLIN, ms)) {
        c_.timed_out = true;
        return -1;
      }
      const ssize_t n = ::recv(c_.fd, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
    }
  }
  ssize_t write(const char* ptr, size_t size) override {
    size_t off = 0;
    while (off < size) {
      const ssize_t n = ::send(c_.fd, ptr + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += size_t(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (!wait(POLLOUT, write_timeout_ms_)) return -1;
        continue;
      }
      return -1;
    }
    return ssize_t(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { addr(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { addr(false, ip, port); }
  socket_t socket() const override { return c_.fd; }

 private:
  int remaining_ms() const {
    return int(std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count());
  }
  bool wait(short events, int ms) const {
    if (ms <= 0) return false;
    pollfd p{c_.fd, events, 0};
    for (;;) {
      const int r = ::poll(&p, 1, ms);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && (p.revents & (events | POLLHUP | POLLERR));
    }
  }
  void addr(bool peer, std::string& ip, int& port) const {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int r = peer ? ::getpeername(c_.fd, reinterpret_cast<sockaddr*>(&ss), &len)
                       : ::getsockname(c_.fd, reinterpret_cast<sockaddr*>(&ss), &len);
    if (r != 0) return;
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, serv, sizeof serv,
                      NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
      ip = host;
      port = std::atoi(serv);
    }
  }
  Conn& c_;
  Clock::time_point deadline_;
  int write_timeout_ms_;
};

// The connection currently run by this thread (for the 408 mapping).
thread_local Conn* t_conn = nullptr;

// Shared with the metrics gauges, which may outlive one ConnPool.
struct ConnCounts {
  std::atomic<int64_t> open{0}, idle{0};
};

// The pool of request threads plus the Parker that holds every connection
// between requests. httplib creates it (new_task_queue), enqueues one task per
// accepted socket, and calls shutdown() when it stops.
class ConnPool : public httplib::TaskQueue {
 public:
  using Run = std::function<bool(Conn&, bool close, bool& closed)>;  // one request; false = close
  struct Limits {
    int threads;
    int64_t max_connections;
    double keep_alive_ms, request_ms;
    size_t max_body;
    std::function<void(const char* what)> count;  // metrics: "evicted", "refused", "timeout", "idle_closed"
    std::function<void(int status)> refused_request;  // metrics: a request the Parker answered itself
  };
  ConnPool(Limits l, Run run, std::shared_ptr<ConnCounts> counts)
      : l_(std::move(l)), run_(std::move(run)), counts_(std::move(counts)), pool_(size_t(l_.threads)) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, wake_, &ev);
    // Stay below the open-file limit: the listener, the pool and httplib need a few.
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
      l_.max_connections = std::max<int64_t>(1, std::min<int64_t>(l_.max_connections, int64_t(rl.rlim_cur) - 32));
    parker_ = std::thread([this] { park_loop(); });
  }
  ~ConnPool() override {
    if (parker_.joinable()) stop_parker();
    ::close(ep_);
    ::close(wake_);
  }
  void enqueue(std::function<void()> fn) override { pool_.enqueue(std::move(fn)); }
  void shutdown() override {
    stop_parker();
    pool_.shutdown();
  }

  /// A socket httplib accepted (called on a pool thread; returns at once).
  void adopt(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (counts_->open.load() >= l_.max_connections && !evict_one()) {
      send_now(fd, raw_response(503, "Service Unavailable", "too many open connections (" +
                                    std::to_string(l_.max_connections) + "); retry later", "Retry-After: 1\r\n"));
      if (l_.count) l_.count("refused");
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
      return;
    }
    ++counts_->open;
    auto* c = new Conn;
    c->fd = fd;
    c->idle_since = Clock::now();
    park(c);
  }

 private:
  // Called with c not parked and owned by the caller.
  void park(Conn* c) {
    std::unique_lock<std::mutex> lk(mu_);
    if (stopping_) {
      lk.unlock();
      close_conn(c);
      return;
    }
    c->compact();
    std::string refusal;
    switch (classify(*c, refusal)) {
      case Next::Dispatch:  // a pipelined request already buffered
        lk.unlock();
        dispatch(c);
        return;
      case Next::Refuse:
        lk.unlock();
        refuse(c, refusal);
        return;
      case Next::Wait:
        break;
    }
    watch(c);
  }

  // With mu_ held: c joins the Parker's set, its one-shot read event armed.
  void watch(Conn* c) {
    c->parked = true;
    parked_.insert(c);
    counts_->idle = int64_t(parked_.size());
    arm(c);
  }
  // With mu_ held: c leaves the Parker's set (the caller now owns it).
  void unwatch(Conn* c) {
    parked_.erase(c);
    counts_->idle = int64_t(parked_.size());
    c->parked = false;
  }
  // (Re-)arm c's one-shot read event.
  void arm(Conn* c) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = c;
    if (::epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev) != 0) ::epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev);
  }

  // What the bytes buffered on c call for: wait for more, hand the request to
  // a thread, or refuse it here (`refusal` is then the answer to send before
  // closing). An "Expect: 100-continue" line is answered here and removed, so
  // the thread sees a plain request.
  enum class Next { Wait, Dispatch, Refuse };
  Next classify(Conn& c, std::string& refusal) {
    if (c.pending() == 0) return Next::Wait;
    Framing f = frame_request(std::string_view(c.buf).substr(c.pos), l_.max_body, kMaxHead, c.scan);
    if (f.expect_continue && f.state != Framing::State::Reject) {
      c.buf.erase(c.pos + f.expect_line, f.expect_line_len);
      const bool waiting = f.state == Framing::State::Incomplete;
      f = frame_request(std::string_view(c.buf).substr(c.pos), l_.max_body, kMaxHead, c.scan);
      // One non-blocking try: the client sends its body anyway after its own
      // short wait (curl: 1 s) if this is lost.
      static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      if (waiting) [[maybe_unused]] auto n = ::send(c.fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    switch (f.state) {
      case Framing::State::Incomplete: return Next::Wait;
      case Framing::State::Complete: return Next::Dispatch;
      case Framing::State::Reject:
        refusal = raw_response(f.status, reason_phrase(f.status), f.message);
        if (l_.refused_request) l_.refused_request(f.status);
        return Next::Refuse;
    }
    return Next::Wait;
  }

  // Answer a refused request, then close its connection gracefully (c is owned
  // by the caller). The client may still be sending the body we refused:
  // closing a socket with unread input makes the kernel send RST, which can
  // destroy the answer before the client reads it. So the write side is shut
  // (the client sees the answer, then EOF) and the connection goes back to the
  // Parker, which reads and drops its input until the client closes, or for
  // at most kDrainMs (a lingering close, as nginx does).
  void refuse(Conn* c, const std::string& answer) {
    send_now(c->fd, answer);
    ::shutdown(c->fd, SHUT_WR);
    std::unique_lock<std::mutex> lk(mu_);
    if (stopping_) {
      lk.unlock();
      close_conn(c);
      return;
    }
    c->draining = true;
    c->buf.clear();
    c->pos = 0;
    c->request_pending = false;
    c->idle_since = Clock::now();
    watch(c);
  }
  static constexpr int64_t kDrainMs = 2000;

  void dispatch(Conn* c) {
    pool_.enqueue([this, c] { serve(c); });
  }

  // On a pool thread: one request, then back to the Parker (or closed).
  void serve(Conn* c) {
    bool closed = false;
    bool ok;
    {
      std::lock_guard<std::mutex> lk(mu_);
      closed = stopping_;  // answer, but say Connection: close
    }
    t_conn = c;
    c->timed_out = false;
    const bool close_after = closed;
    ok = run_(*c, close_after, closed);
    t_conn = nullptr;
    c->idle_since = Clock::now();
    c->request_pending = c->pending() > 0;  // a pipelined request has begun
    c->scan = {};
    c->request_started = c->idle_since;
    if (!ok || closed || close_after || c->timed_out) close_conn(c);
    else park(c);
  }

  void close_conn(Conn* c) {
    ::epoll_ctl(ep_, EPOLL_CTL_DEL, c->fd, nullptr);
    ::shutdown(c->fd, SHUT_RDWR);
    ::close(c->fd);
    delete c;
    --counts_->open;
  }

  // Make room: shut down the longest-idle parked connection with no request
  // begun (the Parker sees its end and closes it). False when none is idle.
  bool evict_one() {
    std::lock_guard<std::mutex> lk(mu_);
    Conn* victim = nullptr;
    for (Conn* c : parked_)
      if (!c->request_pending && !c->evicting && (!victim || c->idle_since < victim->idle_since)) victim = c;
    if (!victim) return false;
    victim->evicting = true;
    ::shutdown(victim->fd, SHUT_RDWR);
    if (l_.count) l_.count("evicted");
    return true;
  }

  // Parker thread: read what arrives on parked connections; hand complete
  // requests to the pool; close idle and timed-out ones.
  void park_loop() {
    std::vector<epoll_event> evs(256);
    char tmp[16384];
    auto last_sweep = Clock::now();
    for (;;) {
      const int n = ::epoll_wait(ep_, evs.data(), int(evs.size()), 100);
      bool stop = false;
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<Conn*>(evs[i].data.ptr);
        if (!c) {
          stop = true;
          continue;
        }
        std::unique_lock<std::mutex> lk(mu_);
        if (!c->parked) continue;  // evicted meanwhile
        bool eof = false;
        size_t dropped = 0;
        for (;;) {
          const ssize_t r = ::recv(c->fd, tmp, sizeof tmp, MSG_DONTWAIT);
          if (r > 0 && c->draining) {  // a refused request's body: dropped (1 MiB per turn, then the others)
            if ((dropped += size_t(r)) > (1u << 20)) break;
            continue;
          }
          if (r > 0) {
            if (!c->request_pending) {
              c->request_pending = true;
              c->request_started = Clock::now();
            }
            c->buf.append(tmp, size_t(r));
            if (c->pending() > l_.max_body + kMaxHead) break;  // classify() refuses or hands it over
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof = true;
          break;
        }
        std::string refusal;
        const Next next = c->draining ? Next::Wait : classify(*c, refusal);
        if (next != Next::Wait) {
          unwatch(c);
          lk.unlock();
          if (next == Next::Dispatch) dispatch(c);
          else refuse(c, refusal);
        } else if (eof) {
          unwatch(c);
          lk.unlock();
          close_conn(c);  // the client went away (mid-request or idle)
        } else {
          arm(c);
        }
      }
      if (stop) break;
      const auto now = Clock::now();
      if (now - last_sweep >= std::chrono::milliseconds(100)) {
        last_sweep = now;
        sweep(now);
      }
    }
    // Stopping: every parked connection is between requests (or mid-way
    // through sending one); close them. Requests already with a thread finish.
    std::vector<Conn*> rest;
    {
      std::lock_guard<std::mutex> lk(mu_);
      rest.assign(parked_.begin(), parked_.end());
      parked_.clear();
      counts_->idle = 0;
    }
    for (Conn* c : rest) close_conn(c);
  }

  void sweep(Clock::time_point now) {
    std::vector<std::pair<Conn*, bool>> expired;  // (conn, mid-request)
    {
      std::lock_guard<std::mutex> lk(mu_);
      const auto idle = std::chrono::microseconds(int64_t(l_.keep_alive_ms * 1000));
      const auto req = std::chrono::microseconds(int64_t(l_.request_ms * 1000));
      const auto drain = std::chrono::milliseconds(kDrainMs);
      for (Conn* c : parked_) {
        if (c->draining ? now - c->idle_since > drain
                        : c->request_pending ? now - c->request_started > req : now - c->idle_since > idle)
          expired.push_back({c, c->request_pending});
      }
      for (auto& e : expired) {
        unwatch(e.first);
        ::epoll_ctl(ep_, EPOLL_CTL_DEL, e.first->fd, nullptr);
      }
    }
    for (auto& [c, mid] : expired) {
      if (mid) {
        send_now(c->fd, raw_response(408, "Request Timeout",
                                     "the request did not arrive within " + std::to_string(int64_t(l_.request_ms)) + " ms"));
        if (l_.count) l_.count("timeout");
      } else if (l_.count && !c->draining) {
        l_.count("idle_closed");
      }
      close_conn(c);
    }
  }

  void stop_parker() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) {
        if (parker_.joinable()) parker_.join();
        return;
      }
      stopping_ = true;
    }
    const uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(wake_, &one, sizeof one);
    if (parker_.joinable()) parker_.join();
  }

  Limits l_;
  Run run_;
  std::shared_ptr<ConnCounts> counts_;
  httplib::ThreadPool pool_;
  int ep_ = -1, wake_ = -1;
  mutable std::mutex mu_;
  std::set<Conn*> parked_;
  bool stopping_ = false;
  std::thread parker_;
};

// httplib::Server with the connection handling above: its (private, virtual)
// per-socket hook hands each accepted socket to the ConnPool, and requests run
// through its protected process_request().
class ParkingServer : public httplib::Server {
 public:
  ConnPool::Limits limits;
  std::atomic<ConnPool*> pool{nullptr};
  std::shared_ptr<ConnCounts> counts = std::make_shared<ConnCounts>();
  /// httplib listens with a backlog of 5: a burst of connects overflows it and
  /// the kernel drops SYNs (each costs its client a 1-s retransmit). listen()
  /// again on the bound socket raises the backlog (Linux).
  void widen_backlog() {
    const socket_t s = svr_sock_;
    if (s != INVALID_SOCKET) ::listen(s, 4096);
  }
  ParkingServer() {
    new_task_queue = [this] {
      auto* p = new ConnPool(limits, [this](Conn& c, bool close, bool& closed) {
        const auto deadline = (c.request_pending ? c.request_started : Clock::now()) +
                              std::chrono::microseconds(int64_t(limits.request_ms * 1000));
        ConnStream strm(c, deadline, int(limits.request_ms));
        return process_request(strm, close, closed, nullptr);
      }, counts);
      pool = p;
      return p;
    };
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    ConnPool* p = pool.load();
    if (!p) {
      ::close(sock);
      return false;
    }
    p->adopt(sock);
    return true;
  }
};

namespace {

// The route patterns, also the "endpoint" label of the request metrics (the
// pattern, not the path, so that model names cannot blow up the series count).
struct Route {
  const char* method;
  const char* pattern;  // regex
  const char* label;
};
const std::vector<Route>& routes() {
  static const std::vector<Route> r{
      {"GET", "/v2", "/v2"},
      {"GET", "/v2/health/live", "/v2/health/live"},
      {"GET", "/v2/health/ready", "/v2/health/ready"},
      {"GET", "/v2/models/([^/]+)", "/v2/models/{name}"},
      {"GET", "/v2/models/([^/]+)/ready", "/v2/models/{name}/ready"},
      {"POST", "/v2/models/([^/]+)/infer", "/v2/models/{name}/infer"},
      {"POST", "/v1/score", "/v1/score"},
      {"POST", "/v1/guard", "/v1/guard"},
      {"POST", "/v1/denoise", "/v1/denoise"},
      {"POST", "/v1/inpaint", "/v1/inpaint"},
      {"GET", "/v1/models", "/v1/models"},
      {"GET", "/metrics", "/metrics"},
  };
  return r;
}

std::string error_body(const std::string& message, const json& detail = nullptr) {
  json j = detail.is_object() ? detail : json::object();
  j["error"] = message;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);  // a path or method may be invalid UTF-8
}

}  // namespace

struct HttpServer::Impl {
  Service& svc;
  ParkingServer http;
  explicit Impl(Service& s) : svc(s) {}

  void reply(httplib::Response& res, int status, const json& body) {
    res.status = status;
    if (body.is_object() && body.contains("model_sha256") && body["model_sha256"].is_string())
      res.set_header("X-Model-SHA256", body["model_sha256"].get<std::string>());
    else if (body.is_object() && body.contains("parameters") && body["parameters"].contains("model_sha256"))
      res.set_header("X-Model-SHA256", body["parameters"]["model_sha256"].get<std::string>());
    res.set_content(body.dump(), "application/json");
  }

  // Run one handler: time it, map every exception to its status, count it.
  void handle(const Route& route, const httplib::Request& req, httplib::Response& res,
              const std::function<json(const httplib::Request&, httplib::Response&)>& fn) {
    const auto t0 = Clock::now();
    try {
      json body = fn(req, res);
      if (!body.is_null()) reply(res, res.status > 0 && res.status != 200 ? res.status : 200, body);
    } catch (const HttpError& e) {
      res.status = e.status;
      if (e.status == 503) res.set_header("Retry-After", std::to_string(svc.options().retry_after_s()));
      if (e.detail.is_object() && e.detail.contains("model_sha256"))
        res.set_header("X-Model-SHA256", e.detail["model_sha256"].get<std::string>());
      res.set_content(error_body(e.what(), e.detail), "application/json");
    } catch (const UsageError& e) {
      res.status = 400;
      res.set_content(error_body(e.what()), "application/json");
    } catch (const DataError& e) {
      res.status = 400;
      res.set_content(error_body(e.what()), "application/json");
    } catch (const DivergenceError& e) {
      res.status = 500;
      res.set_content(error_body(std::string("the model diverged: ") + e.what()), "application/json");
    } catch (const c10::Error& e) {
      std::string msg = e.what_without_backtrace();
      res.status = 500;
      res.set_content(error_body("model error: " + msg.substr(0, msg.find('\n'))), "application/json");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(error_body(std::string("internal error: ") + e.what()), "application/json");
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    auto& m = svc.metrics();
    m.inc("ebm_requests_total", {route.label, std::to_string(res.status)});
    m.observe("ebm_request_duration_seconds", secs, {route.label});
  }

  void install() {
    auto& o = svc.options();
    http.limits = {o.http_threads(), o.max_connections(), o.keep_alive_timeout_ms(), o.request_timeout_ms(),
                   size_t(o.max_body_bytes()), [&m = svc.metrics()](const char* what) { m.inc("ebm_connections_closed_total", {what}); },
                   [&m = svc.metrics()](int status) { m.inc("ebm_requests_total", {"other", std::to_string(status)}); }};
    http.set_payload_max_length(size_t(o.max_body_bytes()));
    http.set_keep_alive_max_count(100000);  // only the Keep-Alive header's "max": connections are not counted
    // Headers and body leave in separate writes; without TCP_NODELAY, Nagle
    // plus the client's delayed ACK adds ~40 ms to every keep-alive answer.
    http.set_tcp_nodelay(true);
    svc.metrics().counter("ebm_connections_closed_total",
                          "Connections the server closed on its own, by reason: idle_closed (keep-alive timeout), "
                          "timeout (408: the request did not arrive in time), evicted (longest-idle, at the connection "
                          "cap), refused (503 at the cap, none idle).",
                          {"reason"});
    svc.metrics().gauge_fn("ebm_open_connections", "Open HTTP connections, idle or busy.",
                           [c = http.counts] { return double(c->open.load()); });
    svc.metrics().gauge_fn("ebm_idle_connections", "Open HTTP connections waiting between requests (no thread held).",
                           [c = http.counts] { return double(c->idle.load()); });
    // httplib's own refusals (413 over the body limit, 400 unparsable HTTP,
    // 404 no route) get the same JSON error shape; bodies we wrote stay.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string msg;
      if (t_conn && t_conn->timed_out) {
        res.status = 408;
        msg = "the request did not arrive within " + std::to_string(int64_t(svc.options().request_timeout_ms())) + " ms";
      } else if (res.status == 413) msg = "request body over the limit of " + std::to_string(svc.options().max_body_bytes()) + " bytes";
      else if (res.status == 404) msg = "no route " + req.method + " " + req.path;
      else msg = "HTTP " + std::to_string(res.status) + " (malformed request)";
      res.set_content(error_body(msg), "application/json");
      svc.metrics().inc("ebm_requests_total", {"other", std::to_string(res.status)});
      return httplib::Server::HandlerResponse::Handled;
    }));

    // The JSON API takes its body whatever the Content-Type. httplib parses a
    // body sent as application/x-www-form-urlencoded (what `curl -d` and
    // urllib send unless told otherwise) as a form and refuses it with 413
    // beyond 8 KiB, a limit compiled into Debian's libcpp-httplib. So such a
    // body is relabelled as JSON before httplib reads it. The request object
    // is httplib's own non-const one, handed to this hook as const.
    http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
      auto it = req.headers.find("Content-Type");
      if (req.method == "POST" && it != req.headers.end() && it->second.rfind("application/x-www-form-urlencoded", 0) == 0)
        const_cast<httplib::Request&>(req).headers.find("Content-Type")->second = "application/json";
      return httplib::Server::HandlerResponse::Unhandled;
    });
    auto body_of = [](const httplib::Request& req) { return parse_body(req.body); };
    auto add = [this](const Route& r, std::function<json(const httplib::Request&, httplib::Response&)> fn) {
      auto h = [this, r, fn](const httplib::Request& req, httplib::Response& res) { handle(r, req, res, fn); };
      if (std::string(r.method) == "GET") http.Get(r.pattern, h);
      else http.Post(r.pattern, h);
    };
    const auto& R = routes();
    add(R[0], [this](auto&, auto&) { return svc.server_metadata(); });
    add(R[1], [](auto&, auto&) { return json{{"live", true}}; });
    add(R[2], [this](auto&, httplib::Response& res) {
      if (!svc.ready()) throw HttpError(503, "not ready (loading, warming up or stopping)");
      return json{{"ready", true}};
    });
    add(R[3], [this](const httplib::Request& req, auto&) { return svc.model_metadata(req.matches[1]); });
    add(R[4], [this](const httplib::Request& req, auto&) {
      const std::string name = req.matches[1];
      if (!svc.model_ready(name)) throw HttpError(503, "model '" + name + "' is not ready");
      return json{{"name", name}, {"ready", true}};
    });
    add(R[5], [this, body_of](const httplib::Request& req, auto&) { return svc.infer(req.matches[1], body_of(req)); });
    add(R[6], [this, body_of](const httplib::Request& req, auto&) { return svc.score(body_of(req)); });
    add(R[7], [this, body_of](const httplib::Request& req, auto&) { return svc.guard(body_of(req)); });
    add(R[8], [this, body_of](const httplib::Request& req, auto&) { return svc.denoise(body_of(req)); });
    add(R[9], [this, body_of](const httplib::Request& req, auto&) { return svc.inpaint(body_of(req)); });
    add(R[10], [this](auto&, auto&) { return svc.models(); });
    // /metrics is text, not JSON.
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      svc.metrics().inc("ebm_requests_total", {"/metrics", "200"});
      res.set_content(svc.metrics().render(), MetricsRegistry::content_type());
    });
    // A known path with the other method: 405 with Allow, not 404.
    auto wrong_method = [this](const httplib::Request& req, httplib::Response& res) {
      for (const auto& r : routes())
        if (std::regex_match(req.path, std::regex(r.pattern))) {
          res.status = 405;
          res.set_header("Allow", r.method);
          res.set_content(error_body(req.method + " is not allowed on " + req.path + " (use " + r.method + ")"),
                          "application/json");
          svc.metrics().inc("ebm_requests_total", {r.label, "405"});
          return;
        }
      res.status = 404;
      res.set_content(error_body("no route " + req.method + " " + req.path), "application/json");
      svc.metrics().inc("ebm_requests_total", {"other", "404"});
    };
    http.Get(".*", wrong_method);
    http.Post(".*", wrong_method);
    http.Put(".*", wrong_method);
    http.Delete(".*", wrong_method);
    http.Patch(".*", wrong_method);
  }
};

HttpServer::HttpServer(Service& service) : impl_(std::make_unique<Impl>(service)) { impl_->install(); }
HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const auto& o = impl_->svc.options();
  if (o.port() == 0) {
    const int p = impl_->http.bind_to_any_port(o.host());
    if (p <= 0) throw UsageError("cannot bind to " + o.host() + " (any port)");
    impl_->http.widen_backlog();
    return p;
  }
  if (!impl_->http.bind_to_port(o.host(), o.port()))
    throw UsageError("cannot bind to " + o.host() + ":" + std::to_string(o.port()) + " (in use, or not an address of this host)");
  impl_->http.widen_backlog();
  return o.port();
}

void HttpServer::listen() { impl_->http.listen_after_bind(); }

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace ebm::serve
