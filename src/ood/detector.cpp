// detector.cpp: the calibrated detector: threshold on the val split,
// conformal p-values, model pinning by SHA-256, prediction.
#include "ebm/ood/ood.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/io/plot.h"
#include "ebm/io/progress.h"
#include "format.h"

namespace ebm {

// ================================================================ calibration

double Detector::p_value(double s) const {
  const auto it = std::lower_bound(val_scores.begin(), val_scores.end(), s);
  const double ge = double(val_scores.end() - it);
  return (1.0 + ge) / (double(val_scores.size()) + 1.0);
}

json Detector::to_json() const {
  int64_t accepted = 0;
  for (double v : val_scores) accepted += v <= threshold;
  json j{{"format", "ebmkit-ood-detector"},
          {"version", 1},
          {"model", model},
          {"model_hash", model_hash},
          {"score", score},
          {"temperature", temperature},
          {"threshold", threshold},
          {"percentile", percentile},
          {"n_val", n_val()},
          {"in", in},
          {"split", split},
          {"val_accept_rate", val_scores.empty() ? 0.0 : double(accepted) / double(val_scores.size())},
          {"rule", "ood = score > threshold; p_value = (1 + #{val_scores >= score}) / (n_val + 1); "
                   "score: higher = more OOD"},
          {"val_scores", val_scores}};
  if (combined.fitted) j["combined_stats"] = combined.to_json();
  return j;
}

Detector Detector::from_json(const json& j, const std::string& source) {
  auto bad = [&](const std::string& why) { return DataError("detector '" + source + "': " + why); };
  if (!j.is_object()) throw bad("not a JSON object");
  if (!j.contains("format") || j["format"] != "ebmkit-ood-detector")
    throw bad("\"format\" is not \"ebmkit-ood-detector\" (is this a detector from `ebm ood calibrate`?)");
  // Compared as JSON, not converted: a version such as 1e300 does not fit an int.
  if (!j.contains("version") || j["version"] != 1) throw bad("unsupported version " + j.value("version", json()).dump());
  auto need = [&](const char* k, bool ok) {
    if (!j.contains(k)) throw bad(std::string("missing \"") + k + "\"");
    if (!ok) throw bad(std::string("\"") + k + "\" has the wrong type: " + j[k].dump().substr(0, 60));
  };
  need("model", j.contains("model") && j["model"].is_string());
  need("model_hash", j.contains("model_hash") && j["model_hash"].is_string());
  need("score", j.contains("score") && j["score"].is_string());
  need("temperature", j.contains("temperature") && j["temperature"].is_number());
  need("threshold", j.contains("threshold") && j["threshold"].is_number());
  need("percentile", j.contains("percentile") && j["percentile"].is_number());
  need("val_scores", j.contains("val_scores") && j["val_scores"].is_array());
  Detector d;
  d.model = j["model"];
  d.model_hash = j["model_hash"];
  d.score = j["score"];
  d.temperature = j["temperature"];
  d.threshold = j["threshold"];
  d.percentile = j["percentile"];
  d.in = j.value("in", "");
  d.split = j.value("split", "");
  const auto& names = score_names();
  if (std::find(names.begin(), names.end(), d.score) == names.end()) throw bad("unknown score '" + d.score + "'");
  if (!(d.temperature > 0)) throw bad("temperature must be > 0");
  if (!std::isfinite(d.threshold)) throw bad("threshold is not finite");
  for (const auto& v : j["val_scores"]) {
    if (!v.is_number()) throw bad("val_scores holds a non-number: " + v.dump().substr(0, 40));
    d.val_scores.push_back(v.get<double>());
  }
  if (d.val_scores.empty()) throw bad("val_scores is empty");
  if (d.score == "combined") {
    if (!j.contains("combined_stats")) throw bad("score \"combined\" but no \"combined_stats\"");
    d.combined = CombinedStats::from_json(j["combined_stats"], "detector '" + source + "'");
  }
  if (!std::is_sorted(d.val_scores.begin(), d.val_scores.end())) throw bad("val_scores are not sorted ascending");
  if (j.contains("n_val") && j["n_val"] != d.n_val())
    throw bad("n_val " + j["n_val"].dump() + " but " + std::to_string(d.n_val()) + " val_scores");
  return d;
}

Detector Detector::load(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number such as 1e999
    throw DataError("detector '" + path + "': invalid JSON: " + e.what());
  }
  try {
    return from_json(j, path);
  } catch (const json::exception& e) {  // a field of the wrong type that from_json does not check itself
    throw DataError("detector '" + path + "': " + e.what());
  }
}

void Detector::save(const std::string& path) const { write_file_atomic(path, to_json().dump(1) + "\n"); }

Detector fit_detector(const torch::Tensor& val_scores, double percentile) {
  if (!(percentile > 0 && percentile <= 100))
    throw UsageError("percentile must be in (0, 100], got " + fmt("%g", percentile));
  Detector d;
  d.val_scores = to_vector(val_scores);
  if (d.val_scores.empty()) throw UsageError("calibration needs at least one validation image");
  for (double v : d.val_scores)
    if (!std::isfinite(v)) throw DivergenceError("a validation score is NaN/Inf");
  std::sort(d.val_scores.begin(), d.val_scores.end());
  const int64_t n = d.n_val();
  // k = ceil(p/100 * n), computed as p*n/100 so that integral cases stay exact.
  int64_t k = int64_t(std::ceil(percentile * double(n) / 100.0 - 1e-9));
  k = std::clamp<int64_t>(k, 1, n);
  d.threshold = d.val_scores[k - 1];
  d.percentile = percentile;
  return d;
}

Detector calibrate(Energy& e, const CalibrateOptions& o) {
  check_score(o.score(), e);
  if (is_posthoc(o.score()))
    throw UsageError("detector files hold the energy scores only; '" + o.score() +
                     "' is for `ood eval` comparisons (use energy, combined, msp, maxlogit or grad-norm)");
  if (o.n() == 0 || o.n() < -1) throw UsageError("n must be positive or -1 (all), got " + std::to_string(o.n()));
  if (o.split() == "test")
    throw UsageError("calibrating on the test split would leak into evaluation; use the val split");
  DatasetOptions dopt;
  dopt.split = o.split();
  dopt.n = o.n();
  dopt.root = o.root();
  const Dataset val = load_dataset(o.in(), dopt);
  if (val.size() == 0) throw DataError("calibration set '" + o.in() + "' (" + o.split() + ") is empty");
  e.set_training(false);
  auto so = ScoreOptions().temperature(o.temperature()).batch(o.batch());
  // "combined" is standardised on the same validation images its threshold is fitted on.
  if (canonical_score(o.score()) == "combined") {
    so.combined(fit_combined_stats(e, val.images, so));
    so.combined().fitted_on = o.in() + "/" + val.split + " (" + std::to_string(val.size()) + " images)";
  }
  std::unique_ptr<Progress> bar;
  if (o.progress()) bar = std::make_unique<Progress>("ood calibrate", val.size(), 5.0);
  int64_t done = 0;
  const auto s = compute_scores(e, val.images, {o.score()}, so, [&](int64_t k) {
                                  done += k;
                                  if (bar) bar->update(done);
                                }).at(o.score());
  if (bar) bar->finish();
  Detector d = fit_detector(s, o.percentile());
  d.score = canonical_score(o.score());
  d.temperature = o.temperature();
  d.in = o.in();
  d.split = val.split;
  d.combined = so.combined();
  return d;
}

Detector calibrate_model(const std::string& model_path, const CalibrateOptions& o) {
  auto e = load_model(model_path);
  Detector d = calibrate(*e, o);
  d.model = model_path;
  d.model_hash = model_hash(model_path);
  return d;
}

void check_model(const Detector& d, const std::string& model_path) {
  const std::string h = model_hash(model_path);
  if (h != d.model_hash)
    throw DataError("model '" + model_path + "' does not match the detector: its hash is " + h +
                    ", the detector was calibrated for '" + d.model + "' with hash " + d.model_hash +
                    "; recalibrate with `ebm ood calibrate --model " + model_path + "`");
}

std::string detector_model_path(const Detector& d, const std::string& detector_path,
                                const std::string& override_path) {
  if (!override_path.empty()) return override_path;
  if (path_exists(d.model)) return d.model;
  const auto slash = detector_path.find_last_of('/');
  if (!d.model.empty() && d.model[0] != '/' && slash != std::string::npos) {
    const std::string rel = detector_path.substr(0, slash + 1) + d.model;
    if (path_exists(rel)) return rel;
    throw DataError("the detector's model '" + d.model + "' does not exist (also tried '" + rel + "'); pass --model");
  }
  throw DataError("the detector's model '" + d.model + "' does not exist; pass --model");
}

json Prediction::to_json(const std::string& score_name) const {
  return {{"index", index}, {"energy", score}, {"ood", ood}, {"p_value", p_value}, {"score", score_name}};
}

std::vector<Prediction> predict(const Detector& d, Energy& e, const torch::Tensor& x, int64_t batch) {
  e.set_training(false);
  const auto s = to_vector(
      ood_score(e, x, d.score, ScoreOptions().temperature(d.temperature).batch(batch).combined(d.combined)));
  std::vector<Prediction> out;
  for (size_t i = 0; i < s.size(); ++i) out.push_back({int64_t(i), s[i], d.is_ood(s[i]), d.p_value(s[i])});
  return out;
}

}  // namespace ebm
