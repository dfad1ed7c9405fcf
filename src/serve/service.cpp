#include "ebm/serve/service.h"

#include <chrono>
#include <cmath>
#include <thread>

#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/restore/restore.h"

namespace ebm::serve {

// One served model: a copy of its weights per batcher worker (forward passes
// run concurrently on different workers, and an Energy is not promised to be
// thread-safe), its card, its hash and, when it has one, its detector.
struct Service::Model {
  std::string name, path, hash;
  json card;
  std::unique_ptr<Detector> detector;
  std::vector<EnergyPtr> copies;
  ImageShape shape;
  int64_t num_classes = 0;
  std::vector<std::string> roles;
  uint64_t generation = 0;  // of the State that loaded it: part of every batch key

  /// Batch key of an operation on this model: requests on models of different
  /// loads never share a batch (a batch runs its first request's function).
  std::string key(const std::string& op) const { return op + ":" + name + "#" + std::to_string(generation); }

  Energy& energy() const {
    const int w = Batcher::current_worker();
    return *copies[size_t(w < 0 ? 0 : w)];
  }
  /// Output names of this model's inference, in order.
  std::vector<std::string> outputs() const {
    std::vector<std::string> out{"energy"};
    if (detector) out.insert(out.end(), {"score", "ood", "p_value"});
    if (num_classes > 0) out.push_back("logits");
    return out;
  }
};

namespace {

using Clock = std::chrono::steady_clock;

std::string base_name(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.find_last_of('/');
  if (slash != std::string::npos) p = p.substr(slash + 1);
  if (p.size() > 3 && p.compare(p.size() - 3, 3, ".pt") == 0) p.resize(p.size() - 3);
  return p;
}

json vec_json(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous();
  return json(std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel()));
}

}  // namespace

void check_serve_options(const ServeOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError(what);
  };
  need(o.port() >= 0 && o.port() <= 65535, "port must be in 0..65535, got " + std::to_string(o.port()));
  need(o.threads() >= 0, "threads must be >= 0, got " + std::to_string(o.threads()));
  need(o.http_threads() >= 1, "http threads must be >= 1, got " + std::to_string(o.http_threads()));
  need(o.max_body_bytes() >= 1024, "max body bytes must be >= 1024, got " + std::to_string(o.max_body_bytes()));
  need(o.max_images_per_request() >= 1,
       "max images per request must be >= 1, got " + std::to_string(o.max_images_per_request()));
  need(o.timeout_ms() > 0, "timeout must be > 0 ms, got " + std::to_string(o.timeout_ms()));
  need(o.retry_after_s() >= 0, "retry-after must be >= 0 s, got " + std::to_string(o.retry_after_s()));
  need(o.max_connections() >= 1, "max connections must be >= 1, got " + std::to_string(o.max_connections()));
  need(o.keep_alive_timeout_ms() > 0, "keep-alive timeout must be > 0 ms");
  need(o.request_timeout_ms() > 0, "request timeout must be > 0 ms");
  need(o.max_steps() >= 1, "max steps must be >= 1, got " + std::to_string(o.max_steps()));
  try {
    check_batcher_options(o.batcher());
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

ModelSpec ServeSpec::parse_model(const std::string& arg) {
  ModelSpec m;
  const auto eq = arg.find('=');
  if (eq != std::string::npos && arg.find('/') > eq) {
    m.name = arg.substr(0, eq);
    m.path = arg.substr(eq + 1);
  } else {
    m.path = arg;
  }
  if (m.path.empty()) throw UsageError("--model '" + arg + "': empty path");
  if (m.name.empty()) m.name = base_name(m.path);
  return m;
}

ServeSpec ServeSpec::from_config(const std::string& path) {
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::parse_error& e) {
    throw DataError("'" + path + "': invalid JSON: " + e.what());
  }
  const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.find_last_of('/'));
  auto resolve = [&](const std::string& p) { return p.empty() || p[0] == '/' ? p : dir + "/" + p; };
  auto str = [&](const json& o, const char* k) -> std::string {
    if (!o.contains(k)) return "";
    if (!o[k].is_string()) throw DataError("'" + path + "': \"" + k + "\" must be a string");
    return o[k].get<std::string>();
  };
  ServeSpec s;
  if (!j.is_object() || !j.contains("models") || !j["models"].is_array() || j["models"].empty())
    throw DataError("'" + path + "': needs \"models\": [{\"name\",\"path\",\"detector\"}, ...]");
  for (const auto& m : j["models"]) {
    if (!m.is_object()) throw DataError("'" + path + "': each of \"models\" must be an object");
    ModelSpec ms{str(m, "name"), resolve(str(m, "path")), resolve(str(m, "detector"))};
    if (ms.path.empty()) throw DataError("'" + path + "': a model without \"path\"");
    if (ms.name.empty()) ms.name = base_name(ms.path);
    s.models.push_back(ms);
  }
  s.classifier = resolve(str(j, "classifier"));
  s.purifier = resolve(str(j, "purifier"));
  return s;
}

std::shared_ptr<const Service::State> Service::load_state(uint64_t generation) const {
  const ServeSpec& spec = spec_;
  const int workers = o_.batcher().workers();
  auto st = std::make_shared<State>();
  st->generation = generation;
  std::vector<std::shared_ptr<Model>> loaded;
  auto add = [&](const ModelSpec& ms, const std::string& role) -> std::shared_ptr<Model> {
    for (auto& m : loaded)
      if (m->path == ms.path) {
        m->roles.push_back(role);
        return m;
      }
    for (auto& m : loaded)
      if (m->name == ms.name) throw UsageError("two served models are named '" + ms.name + "' (use NAME=PATH)");
    auto m = std::make_shared<Model>();
    m->name = ms.name;
    m->path = ms.path;
    m->generation = generation;
    m->card = load_card(ms.path);
    m->hash = model_hash(ms.path);
    for (int w = 0; w < workers; ++w) {
      auto e = load_model(ms.path);
      e->set_training(false);
      m->copies.push_back(e);
    }
    m->num_classes = m->copies[0]->num_classes();
    if (m->card.contains("image_shape") && m->card["image_shape"].is_array() && m->card["image_shape"].size() == 3) {
      const auto& s = m->card["image_shape"];
      m->shape = {s[0].get<int64_t>(), s[1].get<int64_t>(), s[2].get<int64_t>()};
    }
    if (!ms.detector.empty()) {
      m->detector = std::make_unique<Detector>(Detector::load(ms.detector));
      check_model(*m->detector, ms.path);
    }
    m->roles.push_back(role);
    loaded.push_back(m);
    return m;
  };
  for (const auto& ms : spec.models) add(ms, "model");
  if (!spec.classifier.empty() || !spec.purifier.empty()) {
    if (spec.classifier.empty() || spec.purifier.empty())
      throw UsageError("the guard needs both --classifier and --purifier");
    for (const auto& m : loaded)
      if (m->detector) {
        st->guard_detector = m;
        break;
      }
    if (!st->guard_detector) throw UsageError("the guard needs a --detector for one of the served models");
    auto c = add(ServeSpec::parse_model(spec.classifier), "classifier");
    auto p = add(ServeSpec::parse_model(spec.purifier), "purifier");
    if (c->num_classes <= 0)
      throw UsageError("--classifier " + spec.classifier + " is not a classifier (its model has no logits)");
    st->guard_classifier = c;
    st->guard_purifier = p;
    st->purify = purify_options_from_card(p->card);
  }
  st->models.assign(loaded.begin(), loaded.end());
  return st;
}

std::shared_ptr<const Service::State> Service::state() const {
  std::lock_guard<std::mutex> lk(state_mu_);
  return state_;
}

Service::Service(const ServeSpec& spec, ServeOptions o) : o_(std::move(o)), spec_(spec) {
  check_serve_options(o_);
  if (spec.models.empty()) throw UsageError("serve needs at least one --model");
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int total = o_.threads() > 0 ? o_.threads() : std::max(1, cores - 1);
  BatcherOptions bo = o_.batcher();
  bo.threads_per_worker(std::max(1, total / bo.workers()));
  o_.batcher(bo);
  state_ = load_state(0);

  // Metrics: families are declared once, here; http.cpp records the request ones.
  metrics_.counter("ebm_requests_total", "HTTP requests by endpoint and status code.", {"endpoint", "status"});
  metrics_.histogram("ebm_request_duration_seconds", "Time from request parsed to response ready, by endpoint.",
                     {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
                     {"endpoint"});
  metrics_.histogram("ebm_batch_size", "Rows per model call of the dynamic batcher.",
                     {1, 2, 4, 8, 16, 32, 64, 128, 256});
  metrics_.histogram("ebm_batch_duration_seconds", "Time of one batched model call.",
                     {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  metrics_.counter("ebm_images_total", "Images scored by a model with a detector, by model.", {"model"});
  metrics_.counter("ebm_images_flagged_total", "Images flagged out-of-distribution, by model.", {"model"});
  metrics_.counter("ebm_reloads_total", "Model reloads (SIGHUP or Service::reload), by result: ok or failed.", {"result"});
  metrics_.gauge_fn("ebm_ood_flag_rate", "Share of scored images flagged out-of-distribution since start.", [this] {
    const double n = double(scored_.load());
    return n > 0 ? double(flagged_.load()) / n : 0.0;
  });
  metrics_.gauge_fn("ebm_queue_depth", "Requests waiting for a batch.",
                    [this] { return batcher_ ? double(batcher_->queue_depth()) : 0.0; });
  metrics_.gauge_fn("ebm_requests_in_flight", "Requests waiting or running in the batcher.",
                    [this] { return batcher_ ? double(batcher_->in_flight()) : 0.0; });
  metrics_.gauge_fn("ebm_ready", "1 when models are loaded and warmed up and the server is not stopping.",
                    [this] { return ready() ? 1.0 : 0.0; });
  metrics_.gauge_fn("ebm_batcher_workers", "Model worker threads.", [bo] { return double(bo.workers()); });
  batcher_ = std::make_unique<Batcher>(bo, [this](const BatchInfo& b) {
    metrics_.observe("ebm_batch_size", double(b.rows));
    metrics_.observe("ebm_batch_duration_seconds", b.seconds);
  });
}

Service::~Service() { shutdown(); }

void Service::shutdown() {
  stopping_ = true;
  if (batcher_) batcher_->shutdown();
}

void Service::warm(const State& st) {
  // Every worker runs every model once (the first call allocates and picks
  // kernels), so the first user request is not the slow one. A full queue
  // (a reload under load) is waited out, not failed.
  for (const auto& m : st.models) {
    const auto x = torch::full({1, m->shape.c, m->shape.h, m->shape.w}, 0.5f);
    std::vector<std::future<std::vector<torch::Tensor>>> futs;
    for (int w = 0; w < batcher_->options().workers(); ++w) {
      const std::string key = m->key("warmup") + ":" + std::to_string(w);
      for (int attempt = 0;; ++attempt) {
        try {
          futs.push_back(batcher_->submit(key, x, [m](const torch::Tensor& xb) { return score_rows(*m, xb); }));
          break;
        } catch (const QueueFull&) {
          if (stopping_ || attempt > 1000) throw;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    }
    for (auto& f : futs) f.get();
  }
}

void Service::warm_up() {
  warm(*state());
  ready_ = true;
}

json Service::reload() {
  std::lock_guard<std::mutex> serial(reload_mu_);
  const auto t0 = Clock::now();
  const auto old = state();
  std::shared_ptr<const State> fresh;
  try {
    fresh = load_state(old->generation + 1);
    warm(*fresh);
  } catch (...) {
    metrics_.inc("ebm_reloads_total", {"failed"});
    throw;
  }
  {
    std::lock_guard<std::mutex> lk(state_mu_);
    state_ = fresh;
  }
  metrics_.inc("ebm_reloads_total", {"ok"});
  json list = json::array();
  for (const auto& m : fresh->models) {
    std::string before;
    for (const auto& o : old->models)
      if (o->name == m->name) before = o->hash;
    list.push_back({{"name", m->name}, {"old_sha256", before}, {"sha256", m->hash}, {"changed", before != m->hash}});
  }
  return {{"generation", fresh->generation},
          {"seconds", std::chrono::duration<double>(Clock::now() - t0).count()},
          {"models", list}};
}

Service::ModelPtr Service::model(const State& st, const std::string& name) {
  for (const auto& m : st.models)
    if (m->name == name) return m;
  std::string names;
  for (const auto& m : st.models) names += (names.empty() ? "" : ", ") + m->name;
  throw HttpError(404, "unknown model '" + name + "' (served: " + names + ")");
}

Service::ModelPtr Service::model_for(const State& st, const json& req) {
  return req.contains("model") ? model(st, string_field(req, "model", "")) : st.models.front();
}

std::string Service::model_hash_of(const std::string& name) const {
  for (const auto& m : state()->models)
    if (m->name == name) return m->hash;
  return "";
}

std::vector<torch::Tensor> Service::run(const std::string& key, const torch::Tensor& x, BatchFn fn) {
  if (stopping_) throw HttpError(503, "the server is shutting down");
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  std::future<std::vector<torch::Tensor>> fut;
  try {
    fut = batcher_->submit(key, x, std::move(fn), cancelled);
  } catch (const QueueFull& e) {
    throw HttpError(503, e.what());
  }
  if (fut.wait_for(std::chrono::microseconds(int64_t(o_.timeout_ms() * 1000))) != std::future_status::ready) {
    cancelled->store(true);
    throw HttpError(504, "no answer within " + std::to_string(int64_t(o_.timeout_ms())) + " ms");
  }
  return fut.get();  // rethrows what the model call threw (mapped by the HTTP layer)
}

// energy [N] f64, then score [N] f64 when there is a detector, then logits [N,K] f32 for classifiers.
std::vector<torch::Tensor> Service::score_rows(const Model& m, const torch::Tensor& x) {
  Energy& e = m.energy();
  std::vector<torch::Tensor> out;
  std::vector<std::string> names{"energy"};
  ScoreOptions so;
  so.batch(std::max<int64_t>(1, x.size(0)));
  if (m.detector) {
    const std::string s = canonical_score(m.detector->score);
    if (s != "energy") names.push_back(s);
    so.temperature(m.detector->temperature).combined(m.detector->combined);
  }
  const ScoreSet ss = compute_scores(e, x, names, so);
  out.push_back(ss.at("energy"));
  if (m.detector) out.push_back(ss.at(canonical_score(m.detector->score)));
  if (m.num_classes > 0) {
    torch::NoGradGuard ng;
    out.push_back(e.logits(x).to(torch::kFloat32));
  }
  return out;
}

void Service::count_flags(const std::string& model, int64_t n, int64_t flagged) {
  scored_ += uint64_t(n);
  flagged_ += uint64_t(flagged);
  metrics_.inc("ebm_images_total", {model}, double(n));
  metrics_.inc("ebm_images_flagged_total", {model}, double(flagged));
}

json Service::score(const json& req) {
  const auto mp = model_for(*state(), req);
  const Model& m = *mp;
  const auto x = parse_images(req, m.shape, o_.max_images_per_request());
  const auto outs = run(m.key("score"), x, [mp](const torch::Tensor& xb) { return score_rows(*mp, xb); });
  const auto energy = outs[0].contiguous();
  json results = json::array();
  int64_t flagged = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    json r{{"index", i}, {"energy", energy[i].item<double>()}};
    if (m.detector) {
      const double s = outs[1][i].item<double>();
      const bool ood = m.detector->is_ood(s);
      flagged += ood;
      r["score"] = s;
      r["ood"] = ood;
      r["p_value"] = m.detector->p_value(s);
    }
    results.push_back(std::move(r));
  }
  json out{{"model", m.name}, {"model_sha256", m.hash}};
  if (m.detector) {
    count_flags(m.name, x.size(0), flagged);
    out["score"] = m.detector->score;
    out["threshold"] = m.detector->threshold;
  }
  out["results"] = std::move(results);
  return out;
}

json Service::guard(const json& req) {
  const auto st = state();
  if (!st->guard_detector)
    throw HttpError(404, "the guard is not configured: start the server with --detector, --classifier and --purifier");
  const Model& d = *st->guard_detector;
  const Model& c = *st->guard_classifier;
  const Model& p = *st->guard_purifier;
  const bool allow = bool_field(req, "allow_ood", false);
  const auto x = parse_images(req, d.shape, o_.max_images_per_request());
  // One batch runs detection, purification and classification; purification
  // noise comes from a per-worker generator (seed + worker), so a guard answer
  // is reproducible only when the request is alone in its batch.
  const auto outs = run("guard#" + std::to_string(st->generation), x, [this, st](const torch::Tensor& xb) {
    thread_local std::unique_ptr<at::Generator> gen;
    if (!gen)
      gen = std::make_unique<at::Generator>(
          at::make_generator<at::CPUGeneratorImpl>(o_.seed() + uint64_t(std::max(0, Batcher::current_worker()))));
    auto rows = score_rows(*st->guard_detector, xb);
    rows.resize(2);
    rows.push_back(purified_logits(st->guard_classifier->energy(), st->guard_purifier->energy(), xb, st->purify, *gen)
                       .to(torch::kFloat32));
    return rows;
  });
  const auto probs = torch::softmax(outs[2], 1).contiguous();
  json results = json::array();
  std::vector<int64_t> refused;
  std::string reason;
  for (int64_t i = 0; i < x.size(0); ++i) {
    const double s = outs[1][i].item<double>();
    const bool ood = d.detector->is_ood(s);
    json verdict{{"flagged", ood}, {"score", s}, {"energy", outs[0][i].item<double>()},
                 {"p_value", d.detector->p_value(s)}, {"threshold", d.detector->threshold}};
    json r{{"index", i}, {"ood", verdict}};
    if (ood && !allow) {
      refused.push_back(i);
      if (reason.empty()) {
        char buf[200];
        std::snprintf(buf, sizeof buf, "image %lld flagged out-of-distribution: %s score %.6g > threshold %.6g (p = %.4g)",
                      (long long)i, d.detector->score.c_str(), s, d.detector->threshold, d.detector->p_value(s));
        reason = buf;
      }
    } else {
      r["class"] = probs[i].argmax().item<int64_t>();
      r["probabilities"] = vec_json(probs[i]);
    }
    results.push_back(std::move(r));
  }
  count_flags(d.name, x.size(0), [&] {
    int64_t f = 0;
    for (const auto& r : results) f += r["ood"]["flagged"].get<bool>();
    return f;
  }());
  json out{{"model", c.name},
           {"model_sha256", c.hash},
           {"models_sha256", {{"detector", d.hash}, {"classifier", c.hash}, {"purifier", p.hash}}},
           {"purify", purify_options_json(st->purify)},
           {"results", results}};
  if (!refused.empty()) {
    out["refused"] = refused;
    if (refused.size() > 1) reason += " (and " + std::to_string(refused.size() - 1) + " more)";
    out["reason"] = reason;
    throw HttpError(422, reason + "; send \"allow_ood\": true to classify anyway", out);
  }
  return out;
}

json Service::denoise(const json& req) {
  const auto mp = model_for(*state(), req);
  const Model& m = *mp;
  const auto x = parse_images(req, m.shape, o_.max_images_per_request());
  const std::string format = check_image_format(string_field(req, "format", "array"));
  DenoiseOptions o;
  o.solver(string_field(req, "solver", o.solver()))
      .sigma(number_field(req, "sigma", o.sigma(), 0, 1))
      .schedule(string_field(req, "schedule", o.schedule()))
      .steps(int_field(req, "steps", o.steps(), 0, o_.max_steps()))
      .step_size(number_field(req, "step_size", o.step_size(), 0, 10))
      .data_weight(number_field(req, "data_weight", o.data_weight(), 0, 1e6))
      .noise(number_field(req, "noise", o.noise(), 0, 1))
      .seed(uint64_t(int_field(req, "seed", 0, 0, int64_t(1) << 53)));
  if (o.schedule() != "fixed" && o.schedule() != "progressive")
    throw HttpError(400, "schedule must be \"fixed\" or \"progressive\", got \"" + o.schedule() + "\"");
  if (o.schedule() == "progressive" && o.stage_steps() * int64_t(o.stage_weights().size()) > o_.max_steps())
    throw HttpError(400, "the progressive schedule exceeds max_steps");
  const std::string solver = denoise_solver(o);  // UsageError (400) on a bad solver or a missing sigma
  // Deterministic solvers batch across requests; a noisy chain is seeded per
  // request, so it runs alone and equals `ebm denoise --seed` exactly.
  json key{{"solver", solver}, {"sigma", o.sigma()}, {"schedule", o.schedule()}, {"steps", o.steps()},
           {"step_size", o.step_size()}, {"data_weight", o.data_weight()}, {"noise", o.noise()}};
  std::string k = m.key("denoise") + ":" + key.dump();
  if (solver == "gd" && o.noise() > 0) k += ":" + std::to_string(++request_counter_);
  const auto outs = run(k, x, [mp, o](const torch::Tensor& xb) {
    return std::vector<torch::Tensor>{ebm::denoise_solve(mp->energy(), xb, o)};
  });
  json images = json::array();
  for (int64_t i = 0; i < x.size(0); ++i) images.push_back(image_to_json(outs[0][i], format));
  key["seed"] = o.seed();
  return {{"model", m.name}, {"model_sha256", m.hash}, {"options", key}, {"images", std::move(images)}};
}

json Service::inpaint(const json& req) {
  const auto mp = model_for(*state(), req);
  const Model& m = *mp;
  const auto x = parse_images(req, m.shape, o_.max_images_per_request());
  const std::string format = check_image_format(string_field(req, "format", "array"));
  InpaintOptions o;
  o.steps(int_field(req, "steps", o.steps(), 0, o_.max_steps()))
      .step_size(number_field(req, "step_size", o.step_size(), 0, 10))
      .noise(number_field(req, "noise", o.noise(), 0, 1))
      .chains(int_field(req, "chains", o.chains(), 1, 64))
      .seed(uint64_t(int_field(req, "seed", 0, 0, int64_t(1) << 53)));
  if (o.steps() * o.chains() > o_.max_steps() * 4)
    throw HttpError(400, "steps x chains = " + std::to_string(o.steps() * o.chains()) + " exceeds " +
                             std::to_string(o_.max_steps() * 4));
  torch::Tensor known;
  json mask_desc;
  if (req.contains("mask") && req["mask"].is_array()) {
    // [H][W] numbers, nonzero = missing (as `ebm inpaint --mask FILE`), for every image.
    ImageShape one{1, m.shape.h, m.shape.w};
    const auto mk = parse_image(req["mask"], one, "mask") /* values checked in [0,1] */;
    known = (mk == 0).to(torch::kFloat32).unsqueeze(0).expand({x.size(0), 1, m.shape.h, m.shape.w}).contiguous();
    mask_desc = "array";
  } else {
    const std::string spec = string_field(req, "mask", o.mask());
    // Only generated masks: a file path would read the server's disk.
    if (!(spec == "half" || spec.rfind("center:", 0) == 0 || spec.rfind("random:", 0) == 0))
      throw HttpError(400, "mask must be \"center:K\", \"random:P\", \"half\" or an [H][W] array (nonzero = missing), got \"" +
                               spec + "\"");
    known = make_mask(spec, x.size(0), m.shape.h, m.shape.w, o.seed());
    mask_desc = spec;
  }
  if (known.size(1) != 1) known = known.narrow(1, 0, 1);
  const int64_t C = m.shape.c;
  // Image and mask travel as one tensor [N, C+1, H, W]; each request is its
  // own batch because the chains are seeded per request.
  const auto xk = torch::cat({x, known.expand({x.size(0), 1, m.shape.h, m.shape.w}).to(torch::kFloat32)}, 1);
  const auto outs = run(m.key("inpaint") + ":" + std::to_string(++request_counter_), xk,
                        [mp, o, C](const torch::Tensor& b) {
                          return std::vector<torch::Tensor>{
                              ebm::inpaint(mp->energy(), b.narrow(1, 0, C).contiguous(), b.narrow(1, C, 1).contiguous(), o)};
                        });
  json images = json::array();
  for (int64_t i = 0; i < x.size(0); ++i) images.push_back(image_to_json(outs[0][i], format));
  return {{"model", m.name},
          {"model_sha256", m.hash},
          {"options", {{"mask", mask_desc}, {"steps", o.steps()}, {"step_size", o.step_size()}, {"noise", o.noise()},
                       {"chains", o.chains()}, {"seed", o.seed()}}},
          {"images", std::move(images)}};
}

json Service::models() const {
  const auto st = state();
  json list = json::array();
  for (const auto& m : st->models) {
    json j{{"name", m->name}, {"path", m->path}, {"sha256", m->hash}, {"roles", m->roles},
           {"input_shape", {m->shape.c, m->shape.h, m->shape.w}}, {"num_classes", m->num_classes}, {"card", m->card}};
    if (m->detector) {
      const auto& d = *m->detector;
      j["detector"] = {{"score", d.score},   {"threshold", d.threshold}, {"percentile", d.percentile},
                       {"n_val", d.n_val()}, {"in", d.in},               {"split", d.split},
                       {"temperature", d.temperature}, {"model_sha256", d.model_hash}};
    }
    list.push_back(std::move(j));
  }
  json out{{"models", list}, {"default_model", st->models.front()->name}, {"generation", st->generation}};
  if (st->guard_detector)
    out["guard"] = {{"detector", st->guard_detector->name},
                    {"classifier", st->guard_classifier->name},
                    {"purifier", st->guard_purifier->name},
                    {"purify", purify_options_json(st->purify)}};
  return out;
}

// ---------------------------------------------------------------- Open Inference Protocol

json Service::server_metadata() const {
  return {{"name", "ebmkit"}, {"version", version()}, {"extensions", json::array()}};
}

json Service::model_metadata(const std::string& name) const {
  const auto mp = model(*state(), name);
  const Model& m = *mp;
  json outputs = json::array();
  for (const auto& o : m.outputs()) {
    if (o == "logits") outputs.push_back({{"name", o}, {"datatype", "FP32"}, {"shape", {-1, m.num_classes}}});
    else outputs.push_back({{"name", o}, {"datatype", o == "ood" ? "BOOL" : "FP64"}, {"shape", {-1}}});
  }
  return {{"name", m.name},
          {"versions", {"1"}},
          {"platform", "ebmkit"},
          {"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", {-1, m.shape.c, m.shape.h, m.shape.w}}}}},
          {"outputs", outputs},
          {"parameters", {{"sha256", m.hash}, {"accepted_datatypes", {"FP32", "UINT8"}}}}};
}

bool Service::model_ready(const std::string& name) const {
  model(*state(), name);  // 404 when unknown
  return ready();
}

json Service::infer(const std::string& name, const json& req) {
  const auto mp = model(*state(), name);
  const Model& m = *mp;
  const auto x = parse_oip_input(req, m.shape, o_.max_images_per_request());
  const auto wanted = oip_requested_outputs(req, m.outputs());
  const auto outs = run(m.key("score"), x, [mp](const torch::Tensor& xb) { return score_rows(*mp, xb); });
  json outputs = json::array();
  size_t next = 1;
  torch::Tensor score, flags;
  if (m.detector) {
    score = outs[next++];
    flags = score > m.detector->threshold;
    count_flags(m.name, x.size(0), flags.sum().item<int64_t>());
  }
  for (const auto& w : wanted) {
    if (w == "energy") outputs.push_back(oip_tensor(w, outs[0]));
    else if (w == "score") outputs.push_back(oip_tensor(w, score));
    else if (w == "ood") outputs.push_back(oip_tensor(w, flags));
    else if (w == "p_value") {
      auto p = torch::empty({x.size(0)}, torch::kFloat64);
      for (int64_t i = 0; i < x.size(0); ++i) p[i] = m.detector->p_value(score[i].item<double>());
      outputs.push_back(oip_tensor(w, p));
    } else if (w == "logits") outputs.push_back(oip_tensor(w, outs[next]));
  }
  json out{{"model_name", m.name}, {"model_version", "1"}, {"outputs", outputs},
           {"parameters", {{"model_sha256", m.hash}}}};
  if (req.contains("id")) out["id"] = req["id"];
  return out;
}

}  // namespace ebm::serve
