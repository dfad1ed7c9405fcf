#include "ebm/serve/http.h"

#include <chrono>
#include <regex>

#include <httplib.h>
#include <torch/torch.h>

#include "ebm/core/common.h"

namespace ebm::serve {

namespace {

using Clock = std::chrono::steady_clock;

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
  return j.dump();
}

}  // namespace

struct HttpServer::Impl {
  Service& svc;
  httplib::Server http;
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
    const int n_threads = o.http_threads();
    http.new_task_queue = [n_threads] { return new httplib::ThreadPool(size_t(n_threads)); };
    http.set_payload_max_length(size_t(o.max_body_bytes()));
    http.set_keep_alive_max_count(100000);
    // Headers and body leave in separate writes; without TCP_NODELAY, Nagle
    // plus the client's delayed ACK adds ~40 ms to every keep-alive answer.
    http.set_tcp_nodelay(true);
    http.set_read_timeout(10, 0);
    http.set_write_timeout(10, 0);
    // httplib's own refusals (413 over the body limit, 400 unparsable HTTP,
    // 404 no route) get the same JSON error shape; bodies we wrote stay.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string msg;
      if (res.status == 413) msg = "request body over the limit of " + std::to_string(svc.options().max_body_bytes()) + " bytes";
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
    return p;
  }
  if (!impl_->http.bind_to_port(o.host(), o.port()))
    throw UsageError("cannot bind to " + o.host() + ":" + std::to_string(o.port()) + " (in use, or not an address of this host)");
  return o.port();
}

void HttpServer::listen() { impl_->http.listen_after_bind(); }

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace ebm::serve
