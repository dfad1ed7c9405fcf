// shift_eval.cpp: OOD detection under graded shift, the flag-error agreement,
// and the report JSON. See shift_eval.h.
#include "ebm/ood/shift_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/io/progress.h"
#include "ebm/metrics/spearman.h"
#include "ebm/ood/posthoc.h"

namespace ebm {

const std::vector<std::string>& standard_detectors() {
  static const std::vector<std::string> s = [] {
    std::vector<std::string> v{"msp", "maxlogit", "energy"};
    for (const auto& p : posthoc_names()) v.push_back(p);
    return v;
  }();
  return s;
}

double flag_error_auroc(const std::vector<double>& scores, const std::vector<int>& correct) {
  if (scores.size() != correct.size())
    throw UsageError("flag_error_auroc: " + std::to_string(scores.size()) + " scores but " +
                     std::to_string(correct.size()) + " correctness flags");
  if (scores.empty()) throw UsageError("flag_error_auroc: no images");
  std::vector<int> wrong(correct.size());
  int64_t n_wrong = 0;
  for (size_t i = 0; i < correct.size(); ++i) n_wrong += wrong[i] = correct[i] ? 0 : 1;
  // With one class only there is nothing to separate.
  if (n_wrong == 0 || n_wrong == int64_t(wrong.size())) return std::nan("");
  return roc_auc(scores, wrong);
}

double flag_error_auroc(const torch::Tensor& scores, const torch::Tensor& correct) {
  TORCH_CHECK(correct.dim() == 1, "flag_error_auroc: correct must be [N], got ", correct.sizes());
  const auto c = correct.to(torch::kInt32).contiguous();
  return flag_error_auroc(to_vector(scores), std::vector<int>(c.data_ptr<int>(), c.data_ptr<int>() + c.numel()));
}

double severity_reaching(const std::vector<double>& severities, const std::vector<double>& aurocs, double target) {
  TORCH_CHECK(severities.size() == aurocs.size(), "severity_reaching: ", severities.size(), " severities but ",
              aurocs.size(), " AUROCs");
  for (size_t i = 0; i < aurocs.size(); ++i)
    if (aurocs[i] >= target) return severities[i];
  return std::nan("");
}

std::vector<ShiftScore> resolve_shift_scores(const std::string& primary, const std::string& spec, const Energy& model,
                                             const Energy* classifier) {
  check_score(primary, model);
  std::vector<ShiftScore> out{{canonical_score(primary), false, canonical_score(primary)}};
  if (spec.empty()) return out;
  const Energy& target = classifier ? *classifier : model;
  const bool separate = classifier && classifier != &model;
  std::vector<std::string> names;
  if (spec == "all") {
    if (target.num_classes() <= 0)
      throw UsageError("--score all: the standard detectors need a classifier, and " + target.describe() +
                       " is an energy model; give --classifier");
    const auto ok = scores_for(target);  // a TorchScript classifier has no features for the post-hoc ones
    for (const auto& s : standard_detectors())
      if (std::find(ok.begin(), ok.end(), s) != ok.end()) names.push_back(s);
  } else {
    std::stringstream ss(spec);
    std::string s;
    while (std::getline(ss, s, ',')) {
      if (s.empty()) continue;
      check_score(s, target);
      names.push_back(canonical_score(s));
    }
  }
  for (const auto& n : names) {
    ShiftScore sc{n, separate, separate ? "clf:" + n : n};
    const bool dup = std::any_of(out.begin(), out.end(), [&](const ShiftScore& x) {
      return x.name == sc.name && x.on_classifier == sc.on_classifier;
    });
    if (!dup) out.push_back(sc);
  }
  return out;
}

namespace {

// One model's share of the scores, with what they need fitted.
struct Source {
  Energy* e = nullptr;
  ScoreOptions so;
  std::vector<std::string> names;  // scores computed on it
  std::vector<size_t> slots;       // their positions in ShiftModels::scores
};

// Scores [K] of one set (in ShiftModels::scores order) and the classifier's predictions.
struct SetScores {
  std::vector<torch::Tensor> s;  // each [N] float64
  torch::Tensor pred;            // [N] int64, undefined without a classifier
};

void prepare(Source& src, const ShiftOptions& o, json& choices) {
  auto has = [&](auto pred) { return std::any_of(src.names.begin(), src.names.end(), pred); };
  if (has([](const std::string& s) { return s == "combined"; }) && !src.so.combined().fitted)
    src.so.combined(fit_combined_stats(*src.e, o.in(), "val", -1, src.so, o.root()));
  // The same fitting as evaluate_ood: statistics from the fit split, choices on validation OOD only.
  if (has([](const std::string& s) { return is_posthoc(s); })) {
    auto p = std::make_shared<const PosthocModel>(fit_posthoc(
        *src.e, PosthocOptions().in(o.in()).seed(o.seed()).batch(o.batch()).root(o.root()).progress(o.progress())));
    choices = p->choices;
    src.so.posthoc(p);
  }
}

json jnum(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

ShiftReport evaluate_shift(const ShiftModels& m, const ShiftOptions& o) {
  if (!m.model) throw UsageError("evaluate_shift: no model");
  if (m.scores.empty()) throw UsageError("evaluate_shift: no score");
  if (o.shifts().empty()) throw UsageError("no shift given (--shifts noise,blur,...)");
  if (o.n() == 0 || o.n() < -1) throw UsageError("n must be positive or -1 (all), got " + std::to_string(o.n()));
  if (m.scores[0].on_classifier) throw UsageError("evaluate_shift: the primary score runs on the model");
  if (m.detector && m.detector->score != m.scores[0].name)
    throw UsageError("the detector's score is '" + m.detector->score + "' but the primary score is '" +
                     m.scores[0].name + "'");
  Energy* clf = m.classifier;
  const bool separate = clf && clf != m.model;
  if (clf && clf->num_classes() <= 0) throw UsageError("the classifier " + clf->describe() + " has no logits");

  std::vector<Shift> shifts;
  for (const auto& spec : o.shifts()) {
    shifts.push_back(Shift::parse(spec));
    shifts.back().levels(o.levels());  // checks the level count before any work
  }
  DatasetOptions din;
  din.split = "test";
  din.n = o.n();
  din.synthetic_n = o.n() > 0 ? o.n() : 2000;
  din.seed = o.seed();
  din.root = o.root();
  const Dataset clean = load_dataset(o.in(), din);
  if (clean.size() == 0) throw DataError("in-distribution set '" + o.in() + "' has no test images");
  for (auto& s : shifts) s.load_partner(o.root(), din.synthetic_n, o.seed());
  const bool labelled = clf && clean.labels.defined() && clean.labels.size(0) == clean.size();

  Source on_model, on_clf;
  on_model.e = m.model;
  on_model.so.temperature(m.temperature).batch(o.batch());
  if (m.detector) on_model.so.combined(m.detector->combined);  // its threshold was fitted with these
  on_clf.e = clf;
  on_clf.so.temperature(m.classifier_temperature).batch(o.batch());
  for (size_t k = 0; k < m.scores.size(); ++k) {
    // A classifier that is the model shares the model's pass.
    Source& src = m.scores[k].on_classifier && separate ? on_clf : on_model;
    if (m.scores[k].on_classifier && !clf) throw UsageError("score '" + m.scores[k].label + "' needs a classifier");
    src.names.push_back(m.scores[k].name);
    src.slots.push_back(k);
  }
  m.model->set_training(false);
  if (clf) clf->set_training(false);
  json choices;
  prepare(on_model, o, choices);
  if (separate) prepare(on_clf, o, choices);

  auto score_set = [&](const torch::Tensor& x) {
    SetScores out;
    out.s.resize(m.scores.size());
    for (Source* src : {&on_model, &on_clf}) {
      if (src->names.empty()) continue;
      const ScoreSet ss = compute_scores(*src->e, x, src->names, src->so);
      for (size_t i = 0; i < src->names.size(); ++i) out.s[src->slots[i]] = ss.at(src->names[i]);
      if ((src->e == clf) && ss.predictions.defined()) out.pred = ss.predictions;
    }
    if (clf && !out.pred.defined())  // no score was asked of the classifier: its predictions only
      out.pred = map_batched(x, o.batch(), [&](const torch::Tensor& b) { return clf->logits(b).argmax(1); });
    return out;
  };

  const int64_t total_sets = 1 + int64_t(shifts.size()) * (o.levels() - 1);  // level 0 is the clean set
  std::unique_ptr<Progress> bar;
  if (o.progress()) bar = std::make_unique<Progress>("ood shift", total_sets * clean.size(), 5.0);
  int64_t done = 0;
  auto tick = [&](const std::string& what) {
    done += clean.size();
    if (bar) bar->update(done, what);
  };

  const size_t K = m.scores.size();
  const SetScores s0 = score_set(clean.images);
  tick("clean");
  std::vector<std::vector<double>> v0(K);
  for (size_t k = 0; k < K; ++k) v0[k] = to_vector(s0.s[k]);
  auto correct_of = [&](const SetScores& s) {
    return labelled ? s.pred.eq(clean.labels).to(torch::kInt32) : torch::Tensor();
  };
  // The pool over every family: the clean images once, then every severity > 0.
  std::vector<std::vector<torch::Tensor>> all_scores(K);
  std::vector<torch::Tensor> all_correct;
  if (labelled) {
    all_correct.push_back(correct_of(s0));
    for (size_t k = 0; k < K; ++k) all_scores[k].push_back(s0.s[k]);
  }

  ShiftReport r;
  r.in = o.in();
  r.n = clean.size();
  r.levels = o.levels();
  r.seed = o.seed();
  for (const auto& s : m.scores) r.labels.push_back(s.label);
  if (m.detector) r.threshold = m.detector->threshold;
  r.posthoc_choices = choices;

  for (const auto& sh : shifts) {
    ShiftCurve c;
    c.name = sh.spec;
    c.describe = sh.describe();
    std::vector<std::vector<torch::Tensor>> pool(K);
    std::vector<torch::Tensor> pool_correct;
    for (double sev : sh.levels(o.levels())) {
      // Severity 0 is the clean set, bit for bit (Shift::apply), so its scores are s0's.
      const SetScores s = sev == 0 ? s0 : score_set(sh.apply(clean.images, sev, o.seed()));
      if (sev != 0) tick(sh.spec);
      ShiftLevel lv;
      lv.severity = sev;
      for (size_t k = 0; k < K; ++k) lv.metrics.push_back(ood_metrics(v0[k], to_vector(s.s[k])));
      if (labelled) {
        const auto correct = correct_of(s);
        lv.accuracy = correct.to(torch::kFloat64).mean().item<double>();
        pool_correct.push_back(correct);
        if (sev != 0) all_correct.push_back(correct);
      }
      for (size_t k = 0; k < K; ++k) {
        pool[k].push_back(s.s[k]);
        if (labelled && sev != 0) all_scores[k].push_back(s.s[k]);
      }
      if (m.detector) {
        int64_t flagged = 0;
        for (double v : to_vector(s.s[0])) flagged += m.detector->is_ood(v);
        lv.flagged = double(flagged) / double(clean.size());
      }
      c.levels.push_back(std::move(lv));
    }
    std::vector<double> sev;
    for (const auto& lv : c.levels) sev.push_back(lv.severity);
    for (size_t k = 0; k < K; ++k) {
      std::vector<double> au;
      for (const auto& lv : c.levels) au.push_back(lv.metrics[k].auroc);
      c.reaches_09.push_back(severity_reaching(sev, au, 0.9));
      c.spearman.push_back(spearman(sev, au));
      c.flag_error.push_back(labelled ? flag_error_auroc(torch::cat(pool[k]), torch::cat(pool_correct))
                                      : std::nan(""));
    }
    r.shifts.push_back(std::move(c));
  }
  for (size_t k = 0; k < K; ++k)
    r.flag_error_pooled.push_back(labelled ? flag_error_auroc(torch::cat(all_scores[k]), torch::cat(all_correct))
                                           : std::nan(""));
  if (bar) bar->finish();
  return r;
}

ShiftReport ood_shift(const ShiftOptions& o) {
  if (o.model().empty()) throw UsageError("no model given (--model)");
  const auto t0 = std::chrono::steady_clock::now();
  auto model = load_model(o.model());
  std::unique_ptr<Detector> det;
  if (!o.detector().empty()) {
    det = std::make_unique<Detector>(Detector::load(o.detector()));
    check_model(*det, o.model());
    if (det->in != o.in())
      throw UsageError("detector '" + o.detector() + "' was calibrated on '" + det->in + "', not on '" + o.in() +
                       "': its threshold does not apply");
  }
  EnergyPtr clf_owned;
  ShiftModels m;
  m.model = model.get();
  m.detector = det.get();
  // The detector's score and temperature, else the card's default (its first) and temperature.
  const std::string primary = det ? det->score : parse_scores(card_default_score(o.model()), *model).front();
  m.temperature = det ? det->temperature : card_temperature(o.model());
  std::string clf_path;
  if (!o.classifier().empty()) {
    clf_owned = load_model(o.classifier());
    if (clf_owned->num_classes() <= 0)
      throw UsageError("--classifier '" + o.classifier() + "' is not a classifier (" + clf_owned->describe() +
                       " has no logits)");
    m.classifier = clf_owned.get();
    m.classifier_temperature = card_temperature(o.classifier());
    clf_path = o.classifier();
  } else if (model->num_classes() > 0) {
    m.classifier = model.get();
    m.classifier_temperature = m.temperature;
    clf_path = o.model();
  }
  m.scores = resolve_shift_scores(primary, o.score(), *model, m.classifier);
  ShiftReport r = evaluate_shift(m, o);
  r.model = o.model();
  r.classifier = clf_path;
  r.detector = o.detector();
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.threads = at::get_num_threads();
  return r;
}

json ShiftReport::to_json() const {
  json j{{"model", model},
         {"classifier", classifier.empty() ? json(nullptr) : json(classifier)},
         {"detector", detector.empty() ? json(nullptr) : json(detector)},
         {"in", in},
         {"split", "test"},
         {"n", n},
         {"levels", levels},
         {"seed", seed},
         {"score", labels.empty() ? json(nullptr) : json(labels[0])},
         {"scores", labels},
         {"threshold", jnum(threshold)}};
  json arr = json::array();
  for (const auto& c : shifts) {
    json jc{{"name", c.name}, {"scale", c.describe}};
    json lv = json::array();
    for (const auto& l : c.levels) {
      json x{{"severity", l.severity},
             {"auroc", jnum(l.metrics[0].auroc)},
             {"fpr95", jnum(l.metrics[0].fpr95)},
             {"accuracy", jnum(l.accuracy)},
             {"flagged", jnum(l.flagged)}};
      for (size_t k = 0; k < labels.size(); ++k)
        x["scores"][labels[k]] = {{"auroc", jnum(l.metrics[k].auroc)}, {"fpr95", jnum(l.metrics[k].fpr95)}};
      lv.push_back(x);
    }
    jc["levels"] = lv;
    jc["auroc_reaches_0.9_at"] = jnum(c.reaches_09[0]);
    jc["spearman_severity_auroc"] = jnum(c.spearman[0]);
    jc["flag_error_auroc"] = jnum(c.flag_error[0]);
    for (size_t k = 0; k < labels.size(); ++k)
      jc["by_score"][labels[k]] = {{"auroc_reaches_0.9_at", jnum(c.reaches_09[k])},
                                   {"spearman_severity_auroc", jnum(c.spearman[k])},
                                   {"flag_error_auroc", jnum(c.flag_error[k])}};
    arr.push_back(jc);
  }
  j["shifts"] = arr;
  for (size_t k = 0; k < labels.size(); ++k) j["flag_error_auroc_pooled"][labels[k]] = jnum(flag_error_pooled[k]);
  if (!posthoc_choices.is_null()) j["posthoc_choices"] = posthoc_choices;
  j["wall_seconds"] = jnum(wall_seconds);
  if (threads > 0) j["threads"] = threads;
  j["definitions"] = {
      {"auroc", "the score's AUROC, shifted test images (OOD) vs the same clean test images; ties count half"},
      {"fpr95", "share of shifted images accepted at the threshold accepting 95% of the clean ones"},
      {"accuracy", "the classifier's top-1 accuracy on the shifted images"},
      {"flagged", "share of shifted images with score > the detector's calibrated threshold"},
      {"auroc_reaches_0.9_at", "the lowest severity whose AUROC >= 0.9 (null: never)"},
      {"spearman_severity_auroc", "Spearman's rho (average ranks) of severity vs AUROC over the levels"},
      {"flag_error_auroc",
       "AUROC of the score at separating the images the classifier gets wrong (positive) from those it gets "
       "right, every severity of the family pooled (level 0 = the clean images)"},
      {"flag_error_auroc_pooled", "the same over every family: the clean images once, then every severity > 0"}};
  return j;
}

}  // namespace ebm
