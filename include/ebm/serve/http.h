// http.h: the thin HTTP front end (cpp-httplib) over a Service.
//
// Routes (docs/serve.md has a curl example for each; docs/openapi.json the schemas):
//   GET  /v2                          server metadata (Open Inference Protocol)
//   GET  /v2/health/live              200 while the process runs
//   GET  /v2/health/ready             200 once models are warm, 503 while loading or stopping
//   GET  /v2/models/{name}            model metadata: inputs, outputs, shapes, datatypes
//   GET  /v2/models/{name}/ready
//   POST /v2/models/{name}/infer      FP32 or UINT8 input tensor -> energy[, score, ood, p_value][, logits]
//   POST /v1/score | /v1/guard | /v1/denoise | /v1/inpaint     (service.h)
//   GET  /v1/models
//   GET  /metrics                     Prometheus text format
//
// Every response is JSON (except /metrics) and carries X-Model-SHA256 when a
// model produced it. Errors are {"error": "<message>"} (the OIP error shape)
// with 400 (bad request), 404 (unknown model or route), 405 (wrong method),
// 413 (body or image count over the limit), 422 (guard refusal), 503 (queue
// full or stopping; with Retry-After), 504 (timeout), 500 (a model failure).
//
// Connections: cpp-httplib parses and answers, but a connection holds one of
// its --http-threads only while a request that has fully arrived is answered.
// Between requests, and while a request's bytes arrive, connections wait in
// one epoll set, so thousands of idle or slow clients stall no one. Idle
// connections close after keep_alive_timeout_ms; a request not complete within
// request_timeout_ms of its first byte gets 408; beyond max_connections the
// longest-idle connection is closed to make room (503 when none is idle).
#pragma once

#include <memory>
#include <string>

#include "ebm/serve/service.h"

namespace ebm::serve {

class HttpServer {
 public:
  explicit HttpServer(Service& service);
  ~HttpServer();

  /// Bind to the service's host and port (port 0 = any free one) and return
  /// the port. UsageError when the address cannot be bound.
  int bind();
  /// Serve until stop(); returns when every accepted connection is done.
  void listen();
  /// Stop accepting; requests in flight finish. Safe from any thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ebm::serve
