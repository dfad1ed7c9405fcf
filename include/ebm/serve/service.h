// service.h: what `ebm serve` does, without HTTP. Each endpoint is one method
// from a JSON request to a JSON answer; every model call goes through the one
// Batcher; every refusal is an HttpError with its status. http.h puts these
// methods on routes; tests call them directly as well.
//
// Served models: every --model is an Open Inference Protocol model, named by
// its folder (or file) name unless given as NAME=PATH. A model may carry a
// calibrated detector; /v1/guard needs a detector model, a classifier and a
// purifier (an energy for Langevin purification; its card's "purify" settings).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/arg.h>

#include "ebm/core/energy.h"
#include "ebm/defend/purify.h"
#include "ebm/ood/ood.h"
#include "ebm/serve/batcher.h"
#include "ebm/serve/metrics.h"
#include "ebm/serve/protocol.h"

namespace ebm::serve {

struct ServeOptions {
  /// Interface to listen on; only loopback unless told otherwise.
  TORCH_ARG(std::string, host) = "127.0.0.1";
  /// TCP port; 0 = any free port (tests).
  TORCH_ARG(int, port) = 8080;
  /// Total intra-op threads, split evenly between the batcher's workers.
  /// 0 = all cores but one: the HTTP threads parse and answer requests on the
  /// same cores, and OpenMP threads that spin between batches starve them
  /// (on 2 cores, 1 model thread served 1.2x the requests of 2).
  TORCH_ARG(int, threads) = 0;
  /// Dynamic batching and the bounded queue (batcher.h); threads_per_worker is set from `threads`.
  TORCH_ARG(BatcherOptions, batcher) = {};
  /// Threads of the HTTP front end that run requests. A connection holds one
  /// only while a request that has fully arrived is answered (http.h).
  TORCH_ARG(int, http_threads) = 64;
  /// Open connections at most (idle keep-alive ones included). At the cap a
  /// new connection evicts the longest-idle one; when none is idle it gets
  /// 503 and is closed. Also kept below the process's open-file limit.
  TORCH_ARG(int64_t, max_connections) = 10000;
  /// An idle keep-alive connection is closed after this long. Idle
  /// connections hold no HTTP thread (they wait in one epoll set).
  TORCH_ARG(double, keep_alive_timeout_ms) = 5000;
  /// A request's head and body must arrive within this from its first byte;
  /// otherwise 408 and the connection is closed.
  TORCH_ARG(double, request_timeout_ms) = 10000;
  /// Larger request bodies get 413 before they are parsed.
  TORCH_ARG(int64_t, max_body_bytes) = 8 << 20;
  /// More images in one request get 413.
  TORCH_ARG(int64_t, max_images_per_request) = 256;
  /// A request not answered within this gets 504 (and is dropped if it has not started).
  TORCH_ARG(double, timeout_ms) = 30000;
  /// Seconds in the Retry-After header of a 503.
  TORCH_ARG(int, retry_after_s) = 1;
  /// Most Langevin steps a /v1/denoise or /v1/inpaint request may ask for.
  TORCH_ARG(int64_t, max_steps) = 2000;
  /// Seed of the guard's purification noise (per worker: seed + worker index).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Throws UsageError naming the bad value.
void check_serve_options(const ServeOptions& o);

/// One served model as configured.
struct ModelSpec {
  std::string name;      // OIP model name; "" = derived from the path
  std::string path;      // native folder or TorchScript file
  std::string detector;  // detector JSON (optional)
};

/// What to serve.
struct ServeSpec {
  std::vector<ModelSpec> models;  // the first is the default of /v1 requests without "model"
  std::string classifier;         // guard: classifier model (also served, by name)
  std::string purifier;           // guard: purification energy (also served, by name)
  /// "NAME=PATH" or "PATH" -> ModelSpec (name from the last path component, ".pt" dropped).
  static ModelSpec parse_model(const std::string& arg);
  /// {"models":[{"name","path","detector"}],"classifier","purifier"}; relative
  /// paths are taken from the config file's folder. DataError on a bad file.
  static ServeSpec from_config(const std::string& path);
};

class Service {
 public:
  /// Loads every model (and checks each detector's model hash), starts the
  /// batcher. Not ready until warm_up() has run.
  Service(const ServeSpec& spec, ServeOptions o = {});
  ~Service();

  /// One forward pass per model and per worker, then ready() is true.
  void warm_up();
  /// Reload every model, detector and guard setting from disk (the paths of
  /// the ServeSpec), warm the new copies up, then switch to them at once.
  /// Requests already running finish on the models they started with, and
  /// every answer's "model_sha256" names the model that produced it. On any
  /// error (a missing or broken file, a detector that does not match its new
  /// model) the old models stay and the error is rethrown. Safe from any
  /// thread; concurrent reloads run one after the other. Returns
  /// {"generation","seconds","models":[{"name","old_sha256","sha256","changed"}]}.
  json reload();
  bool ready() const { return ready_ && !stopping_; }
  /// Not ready any more; the batcher drains what it accepted.
  void shutdown();

  // ---- the simple JSON API (/v1) ----
  /// {"model"?, "images"} -> {"model","model_sha256","score"?,"threshold"?,
  ///  "results":[{"index","energy","score"?,"ood"?,"p_value"?}]}
  json score(const json& req);
  /// {"images","allow_ood"?=false} -> {"results":[{"index","class","probabilities",
  ///  "ood":{"flagged","score","p_value","threshold"}}],...}; 422 when an image
  ///  is flagged and allow_ood is false (the body names each flagged image).
  json guard(const json& req);
  /// {"model"?, "images", "sigma"?, "solver"?, "steps"?, "step_size"?,
  ///  "data_weight"?, "noise"?, "schedule"?, "seed"?, "format"?} -> {"images",...}
  json denoise(const json& req);
  /// {"model"?, "images", "mask"?, "steps"?, "step_size"?, "noise"?, "chains"?,
  ///  "seed"?, "format"?} -> {"images",...}
  json inpaint(const json& req);
  /// {"models":[{"name","path","sha256","roles","card","detector"?}],"guard"?}
  json models() const;

  // ---- Open Inference Protocol (KServe V2) ----
  json server_metadata() const;
  /// 404 for an unknown model.
  json model_metadata(const std::string& name) const;
  bool model_ready(const std::string& name) const;
  json infer(const std::string& name, const json& req);

  /// The SHA-256 of the model a request would use ("" if unknown); for the
  /// X-Model-SHA256 response header.
  std::string model_hash_of(const std::string& name) const;

  MetricsRegistry& metrics() { return metrics_; }
  const ServeOptions& options() const { return o_; }
  const Batcher& batcher() const { return *batcher_; }

 private:
  struct Model;
  using ModelPtr = std::shared_ptr<const Model>;
  /// Every served model as loaded at one time (start or a reload). A request
  /// takes the current state once and keeps it (and its models) alive until
  /// its answer is written, so a reload never changes a request halfway.
  struct State {
    std::vector<ModelPtr> models;
    ModelPtr guard_detector, guard_classifier, guard_purifier;
    PurifyOptions purify;
    uint64_t generation = 0;
  };
  std::shared_ptr<const State> load_state(uint64_t generation) const;
  void warm(const State& st);
  std::shared_ptr<const State> state() const;
  static ModelPtr model(const State& st, const std::string& name);  // 404 when unknown
  static ModelPtr model_for(const State& st, const json& req);     // req["model"] or the default
  std::vector<torch::Tensor> run(const std::string& key, const torch::Tensor& x, BatchFn fn);
  static std::vector<torch::Tensor> score_rows(const Model& m, const torch::Tensor& x);
  void count_flags(const std::string& model, int64_t n, int64_t flagged);

  ServeOptions o_;
  ServeSpec spec_;
  mutable std::mutex state_mu_;
  std::shared_ptr<const State> state_;
  std::mutex reload_mu_;
  MetricsRegistry metrics_;
  std::unique_ptr<Batcher> batcher_;
  std::atomic<bool> ready_{false}, stopping_{false};
  std::atomic<uint64_t> request_counter_{0};
  std::atomic<uint64_t> scored_{0}, flagged_{0};
};

}  // namespace ebm::serve
