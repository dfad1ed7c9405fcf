// evaluate.cpp: evaluate_ood (in-distribution test split vs each OOD set) and
// the OodReport JSON. See ood.h.
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
#include "ebm/ood/val_ood.h"
#include "format.h"

namespace ebm {

// ================================================================ protocol

std::string ood_group(const std::string& in, const std::string& set) {
  auto base = [](const std::string& n) {
    const auto c = n.find(':');
    return c == std::string::npos ? n : n.substr(c + 1);
  };
  if (set.rfind("vflip:", 0) == 0 || set.rfind("invert:", 0) == 0) return "near";
  if (set == "letters") return "near";
  const std::string b = base(in);
  if ((b == "mnist" && set == "fashion-mnist") || (b == "fashion-mnist" && set == "mnist")) return "near";
  return "far";
}

bool is_seen(const std::string& set, const std::vector<std::string>& seen) {
  for (const auto& s : seen) {
    if (s == set) return true;
    if (s.size() >= 2 && s.compare(s.size() - 2, 2, ":*") == 0 && set.rfind(s.substr(0, s.size() - 1), 0) == 0)
      return true;
  }
  return false;
}

namespace {

void collect_seen(const std::string& model_path, std::vector<std::string>& out, int depth) {
  if (depth > 8) throw DataError("'" + model_path + "': ensemble members nest too deeply");
  const json card = load_card(model_path);
  auto add = [&](const std::string& s) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  };
  if (card.contains("ood_seen") && card["ood_seen"].is_array()) {
    for (const auto& s : card["ood_seen"])
      if (s.is_string()) add(s.get<std::string>());
  } else if (card.contains("options") && card["options"].is_object() && card["options"].contains("outliers")) {
    // train.h's synthesize_outliers: generators 4 (uniform noise) and 5 (contrast inversion)
    // are those of the test sets "uniform" and "invert:<name>".
    add("uniform");
    add("invert:*");
  }
  if (card.contains("ood_choices_saw") && card["ood_choices_saw"].is_array())
    for (const auto& s : card["ood_choices_saw"])
      if (s.is_string()) add(s.get<std::string>());
  if (card.contains("members") && card["members"].is_array())
    for (const auto& m : card["members"]) {
      if (!m.contains("model") || !m["model"].is_string()) continue;
      std::string p = m["model"].get<std::string>();
      if (!p.empty() && p[0] != '/') p = model_path + "/" + p;
      collect_seen(p, out, depth + 1);
    }
}

OodMetrics mean_metrics(const std::vector<OodSetResult>& sets, int64_t n_in, const std::string& group) {
  OodMetrics m;
  m.n_in = n_in;
  double k = 0;
  for (const auto& x : sets) k += !x.seen && (group.empty() || x.group == group);
  if (k == 0) {  // every set was seen: there is no held-out mean
    m.auroc = m.aupr_in = m.aupr_out = m.fpr95 = m.detection_error = std::nan("");
    return m;
  }
  for (const auto& x : sets) {
    if (x.seen || (!group.empty() && x.group != group)) continue;
    m.auroc += x.metrics.auroc / k;
    m.aupr_in += x.metrics.aupr_in / k;
    m.aupr_out += x.metrics.aupr_out / k;
    m.fpr95 += x.metrics.fpr95 / k;
    m.detection_error += x.metrics.detection_error / k;
    m.n_ood += x.n;
  }
  return m;
}

}  // namespace

std::vector<std::string> seen_in_training(const std::string& model_path) {
  std::vector<std::string> out;
  collect_seen(model_path, out, 0);
  return out;
}

// ================================================================ evaluation

std::vector<OodReport> evaluate_ood(Energy& e, const OodEvalOptions& o) {
  if (o.ood().empty()) throw UsageError("no OOD dataset given (--ood A,B,...)");
  if (o.scores().empty()) throw UsageError("no OOD score given");
  if (o.n_in() == 0 || o.n_in() < -1) throw UsageError("n_in must be positive or -1 (all), got " + std::to_string(o.n_in()));
  if (o.n_ood() == 0 || o.n_ood() < -1) throw UsageError("n_ood must be positive or -1 (all), got " + std::to_string(o.n_ood()));
  if (o.bootstrap() < 0) throw UsageError("bootstrap resamples must be >= 0, got " + std::to_string(o.bootstrap()));
  for (const auto& s : o.scores()) check_score(s, e);
  const bool val = check_eval_split(o.split()) == "val";
  std::vector<std::string> ood_names;
  for (const auto& name : o.ood()) {
    if (val && !is_val_ood(name))
      throw UsageError("OOD set '" + name + "' on the val split: choices are made on validation OOD only "
                       "(pixel-shuffle, patch-shuffle, blur, mixup, val-ood or glyphs); test OOD sets go with --split test");
    if (name == "val-ood")
      for (const auto& k : val_ood_kinds()) ood_names.push_back(k);
    else
      ood_names.push_back(name);
  }
  ScoreOptions so;
  so.temperature(o.temperature()).batch(o.batch());
  e.set_training(false);
  // The combined score's scales come from the validation split, never from test or OOD data.
  if (std::find(o.scores().begin(), o.scores().end(), "combined") != o.scores().end())
    so.combined(fit_combined_stats(e, o.in(), "val", -1, so, o.root()));
  // The post-hoc detectors: statistics from the fit split, choices on validation OOD only.
  if (std::any_of(o.scores().begin(), o.scores().end(), [](const std::string& s) { return is_posthoc(s); }))
    so.posthoc(std::make_shared<const PosthocModel>(
        fit_posthoc(e, PosthocOptions().in(o.in()).seed(o.seed()).batch(o.batch()).root(o.root()).progress(o.progress()))));

  DatasetOptions din;
  din.split = o.split();
  din.n = o.n_in();
  din.synthetic_n = o.n_in() > 0 ? o.n_in() : 2000;
  din.seed = o.seed();
  din.root = o.root();
  const Dataset in = load_dataset(o.in(), din);
  if (in.size() == 0) throw DataError("in-distribution set '" + o.in() + "' is empty");
  std::vector<Dataset> outs;
  for (size_t j = 0; j < ood_names.size(); ++j) {
    const auto& name = ood_names[j];
    DatasetOptions d = din;
    d.n = o.n_ood();
    d.synthetic_n = o.n_ood() > 0 ? o.n_ood() : 2000;
    if (val) {
      Dataset v;
      v.name = name == "glyphs" ? std::string("glyphs/val") : name + ":" + o.in() + "/fit";
      v.split = name == "glyphs" ? "val" : "fit";
      v.images = validation_ood(name, o.in(), d.synthetic_n, o.seed() + 1000 + j, o.root());
      outs.push_back(v);
    } else {
      outs.push_back(load_dataset(name, d));
    }
    if (outs.back().size() == 0) throw DataError("OOD set '" + name + "' is empty");
  }

  const bool grad = std::find(o.scores().begin(), o.scores().end(), "grad-norm") != o.scores().end();
  int64_t total = in.size();
  for (const auto& d : outs) total += d.size();
  std::unique_ptr<Progress> bar;
  if (o.progress()) bar = std::make_unique<Progress>("ood eval", total, 5.0);
  int64_t done = 0;
  auto tick = [&](int64_t k) {
    done += k;
    if (bar) bar->update(done, grad ? "(grad-norm needs autograd)" : "");
  };

  const ScoreSet s_in = compute_scores(e, in.images, o.scores(), so, tick);
  double accuracy = std::nan("");
  if (s_in.predictions.defined() && in.labels.defined() && in.labels.size(0) == in.size())
    accuracy = s_in.predictions.eq(in.labels).to(torch::kFloat64).mean().item<double>();
  std::vector<ScoreSet> s_out;
  for (const auto& d : outs) s_out.push_back(compute_scores(e, d.images, o.scores(), so, tick));
  if (bar) bar->finish();

  std::vector<OodReport> reports;
  for (const auto& score : o.scores()) {
    OodReport r;
    r.score = score;
    r.in = o.in();
    r.split = o.split();
    r.n_in = in.size();
    r.temperature = o.temperature();
    r.in_scores = s_in.at(score);
    r.mean_score_in = r.in_scores.mean().item<double>();
    if (score == "combined") r.combined = so.combined();
    if (is_posthoc(score)) {
      const auto& c = so.posthoc()->choices;
      r.choices = {{"fitted_on", c["fitted_on"]}, {"chosen_on", c["chosen_on"]}, {"rule", c["rule"]}};
      if (c.contains(score)) r.choices["chosen"] = c[score];
      if (c["validation"].contains(score)) r.choices["validation"] = c["validation"][score];
    }
    r.accuracy = accuracy;
    const auto vin = to_vector(r.in_scores);
    for (size_t j = 0; j < outs.size(); ++j) {
      OodSetResult res;
      res.name = ood_names[j];
      res.group = val ? "val" : ood_group(o.in(), res.name);
      res.seen = is_seen(res.name, o.seen());
      res.n = outs[j].size();
      res.scores = s_out[j].at(score);
      res.mean_score = res.scores.mean().item<double>();
      const auto vout = to_vector(res.scores);
      res.metrics = ood_metrics(vin, vout);
      if (o.bootstrap() > 0) {
        res.has_ci = true;
        res.ci = ood_metrics_ci(vin, vout, BootstrapOptions().resamples(o.bootstrap()).seed(o.seed() + j));
      }
      r.ood.push_back(res);
    }
    r.mean = mean_metrics(r.ood, r.n_in, "");
    for (const char* g : {"near", "far"})
      if (std::any_of(r.ood.begin(), r.ood.end(), [&](const OodSetResult& x) { return x.group == g && !x.seen; }))
        r.groups.emplace_back(g, mean_metrics(r.ood, r.n_in, g));
    reports.push_back(std::move(r));
  }
  return reports;
}

json OodReport::to_json() const {
  json j;
  j["score"] = score;
  j["in"] = in;
  j["split"] = split;
  j["n_in"] = n_in;
  j["temperature"] = temperature;
  j["mean_score_in"] = mean_score_in;
  if (combined.fitted) j["combined_stats"] = combined.to_json();
  if (!choices.is_null()) j["choices"] = choices;
  json arr = json::array();
  for (const auto& x : ood) {
    json o{{"name", x.name}, {"group", x.group}, {"n", x.n}};
    if (x.seen) o["seen"] = true;
    o.update(x.metrics.to_json());
    o["mean_score"] = x.mean_score;
    if (x.has_ci) o["ci"] = x.ci.to_json();
    arr.push_back(o);
  }
  j["ood"] = arr;
  if (std::isnan(mean.auroc)) {
    j["mean"] = nullptr;  // every set was seen: no held-out mean
  } else {
    json m = mean.to_json();
    m["n"] = mean.n_ood;
    j["mean"] = m;
  }
  for (const auto& [g, gm] : groups) {
    json jg = gm.to_json();
    jg["n"] = gm.n_ood;
    j["groups"][g] = jg;
  }
  if (!std::isnan(accuracy)) j["classifier"] = {{"accuracy", accuracy}};
  j["conventions"] = {
      {"score", "higher = more OOD"},
      {"auroc", "ties count half (sklearn roc_auc_score)"},
      {"aupr_in", "average precision, in-distribution positive, ranked by -score"},
      {"aupr_out", "average precision, OOD positive, ranked by score"},
      {"fpr95", "fraction of OOD accepted when 95% of in-distribution is accepted (positive = in-distribution)"},
      {"detection_error", "min over thresholds of 0.5*(1-tpr) + 0.5*fpr"}};
  return j;
}

json reports_json(const std::vector<OodReport>& reports) {
  TORCH_INTERNAL_ASSERT(!reports.empty());
  if (reports.size() == 1) return reports[0].to_json();
  json j{{"in", reports[0].in}, {"split", reports[0].split}, {"n_in", reports[0].n_in}};
  if (!std::isnan(reports[0].accuracy)) j["classifier"] = {{"accuracy", reports[0].accuracy}};
  j["scores"] = json::array();
  for (const auto& r : reports) j["scores"].push_back(r.to_json());
  return j;
}

}  // namespace ebm
