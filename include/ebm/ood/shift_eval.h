// shift_eval.h: OOD detection under graded distribution shift (`ebm ood shift`):
// how detection varies with the degree of shift, and whether the detector's
// flags track the classifier's failures.
//
// The first n images of the in-distribution TEST split are the clean set. Each
// shift family (shift.h) is applied to them at K severities linspace(0, max, K)
// (level 0 is the clean set itself), and at each severity:
//   auroc, fpr95  each score's OOD metrics (metrics.h), the shifted images as
//                 OOD against the same clean images as in-distribution. Level 0
//                 therefore reads AUROC 0.5 (up to rounding) and FPR95 0.95;
//   accuracy      the classifier's top-1 accuracy on the shifted images, against
//                 the clean labels (NaN without a classifier or labels);
//   flagged       the share of shifted images the calibrated detector flags,
//                 score > threshold (NaN without a detector). Level 0 reads the
//                 detector's flag rate on clean test images (~5% at percentile 95).
// Per family and score:
//   auroc_reaches_0.9_at  the lowest severity whose AUROC >= 0.9 (NaN: never);
//   spearman      Spearman's rho of severity vs AUROC (spearman.h): does the
//                 detector's AUROC rise with the shift?
//   flag_error_auroc  the FLAG-ERROR AGREEMENT: roc_auc (metrics.h) of the score
//                 at separating the images the classifier gets wrong (positive)
//                 from those it gets right, over every image of every severity
//                 of the family pooled (level 0 included). The selective-
//                 classification view: a guard is good when it flags what the
//                 classifier would get wrong. NaN when the pool has no error or
//                 no correct prediction.
// And pooled over every family (the clean images once, plus every severity > 0
// of every family): flag_error_auroc per score.
//
// Scores. The PRIMARY score is the detector's (its score and temperature), or
// without a detector the model card's default score (its first, at the card's
// temperature). Comparison scores (--score) run on the classifier when there is
// one, else on the model; "all" = the standard detectors: msp, maxlogit, energy
// (the classifier's free energy) and the post-hoc odin, mahalanobis, knn, vim,
// react (posthoc.h), fitted exactly as `ood eval` fits them (fit_posthoc on the
// in-distribution fit split, choices on validation OOD). A comparison score on
// a classifier that is a separate model is labelled "clf:<name>".
//
// The classifier is the one given, else the model when it is a classifier.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <cmath>
#include <string>
#include <vector>

#include "ebm/core/energy.h"
#include "ebm/metrics/metrics.h"
#include "ebm/ood/ood.h"
#include "ebm/ood/shift.h"

namespace ebm {

/// The standard detectors "all" puts beside the primary score, in table order:
/// msp, maxlogit, energy, then posthoc_names().
const std::vector<std::string>& standard_detectors();

/// The flag-error agreement of scores [N] (higher = more OOD) with the
/// classifier's correctness [N] (bool or 0/1): roc_auc with wrong = positive
/// (sklearn roc_auc_score(1 - correct, scores)). NaN when every prediction is
/// right or every one is wrong. UsageError on a length mismatch or N = 0.
double flag_error_auroc(const std::vector<double>& scores, const std::vector<int>& correct);
double flag_error_auroc(const torch::Tensor& scores, const torch::Tensor& correct);

/// The lowest severity whose AUROC >= `target`, severities [K] increasing,
/// aurocs [K]; NaN when none reaches it.
double severity_reaching(const std::vector<double>& severities, const std::vector<double>& aurocs, double target);

/// One score in a shift evaluation.
struct ShiftScore {
  std::string name;            // an ood.h score name (canonical)
  bool on_classifier = false;  // computed on the classifier (else on the model)
  std::string label;           // in reports: name, or "clf:<name>" on a separate classifier
};

/// The models of a shift evaluation, loaded. scores[0] is the primary score.
struct ShiftModels {
  Energy* model = nullptr;           // required
  double temperature = 1.0;          // T of the model's free energy (classifiers)
  Energy* classifier = nullptr;      // accuracy and comparison scores; may be `model`; null = none
  double classifier_temperature = 1.0;
  const Detector* detector = nullptr;  // flagged share; its score and temperature are scores[0]'s
  std::vector<ShiftScore> scores;
};

/// Resolve the scores: the primary (on the model) first, then the comparison
/// `spec` ("" = none, "all" = standard_detectors() that apply, or a comma
/// list), on the classifier when `classifier` is non-null, else on the model.
/// Duplicates are dropped. UsageError naming a score that does not apply.
std::vector<ShiftScore> resolve_shift_scores(const std::string& primary, const std::string& spec, const Energy& model,
                                             const Energy* classifier);

struct ShiftOptions {
  /// Model folder or TorchScript file (the detector's model when one is given).
  TORCH_ARG(std::string, model) = "";
  /// Classifier for the accuracy, the flag-error agreement and the comparison
  /// scores; "" = the model if it is a classifier, else none.
  TORCH_ARG(std::string, classifier) = "";
  /// Calibrated detector JSON (ood.h); "" = none (no flagged share). Its model
  /// hash must match `model` and its "in" must be `in`.
  TORCH_ARG(std::string, detector) = "";
  /// Comparison scores: "" = none, "all" = standard_detectors(), or a comma list.
  TORCH_ARG(std::string, score) = "";
  /// In-distribution dataset (data.h): its TEST split is shifted.
  TORCH_ARG(std::string, in) = "fashion-mnist";
  /// Shift specs (shift.h), each a curve.
  TORCH_ARG(std::vector<std::string>, shifts) = default_shifts();
  /// Severities per family, linspace(0, max, levels); >= 2.
  TORCH_ARG(int64_t, levels) = 6;
  /// Clean test images (the first n of the split; -1 = all). 2000 keeps a
  /// 7-family, 6-level run with every standard detector within minutes on two
  /// cores (36 sets of n images are scored), and is all of MNIST's test split.
  TORCH_ARG(int64_t, n) = 2000;
  /// Seed of the shifts (shift.h), of synthetic mix partners and of the post-hoc choices.
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(int64_t, batch) = kScoringBatch;
  /// Data directory; empty = data_dir().
  TORCH_ARG(std::string, root) = "";
  /// Progress on stderr (ebm::Progress).
  TORCH_ARG(bool, progress) = true;
};

/// One severity of one family.
struct ShiftLevel {
  double severity = 0;
  std::vector<OodMetrics> metrics;     // per score, in ShiftModels::scores order
  double accuracy = std::nan("");      // classifier top-1 on the shifted images
  double flagged = std::nan("");       // detector's flagged share
};

/// One family's curve and its summary figures, per score.
struct ShiftCurve {
  std::string name;      // the spec, e.g. "mix:letters"
  std::string describe;  // Shift::describe()
  std::vector<ShiftLevel> levels;
  std::vector<double> reaches_09;  // severity_reaching(.., 0.9) per score
  std::vector<double> spearman;    // rho(severity, auroc) per score
  std::vector<double> flag_error;  // flag_error_auroc pooled over the levels, per score
};

struct ShiftReport {
  std::string model, classifier, detector, in;
  std::vector<std::string> labels;  // score labels; labels[0] = the primary
  int64_t n = 0, levels = 0;
  uint64_t seed = 0;
  double threshold = std::nan("");   // the detector's
  std::vector<ShiftCurve> shifts;
  std::vector<double> flag_error_pooled;  // per score, every family pooled
  /// Post-hoc choices when fitted (PosthocModel::choices), else null.
  json posthoc_choices;
  /// ood_shift only: wall time of the whole run (loading, fitting, scoring) and
  /// the intra-op thread count it ran with; NaN / 0 otherwise.
  double wall_seconds = std::nan("");
  int threads = 0;
  /// {"model","classifier","detector","in","n","levels","seed","score","scores","threshold",
  ///  "shifts":[{"name","scale","levels":[{"severity","auroc","fpr95","accuracy","flagged",
  ///  "scores":{label:{"auroc","fpr95"}}}],"auroc_reaches_0.9_at","spearman_severity_auroc",
  ///  "flag_error_auroc","by_score":{label:{...}}}],"flag_error_auroc_pooled":{label:..},
  ///  "wall_seconds","threads","definitions"}; the top-level level fields are the
///  primary score's; NaN -> null.
  json to_json() const;
};

/// The evaluation on loaded models (see the top of this file).
ShiftReport evaluate_shift(const ShiftModels& m, const ShiftOptions& o);

/// The whole command: load o.model (and o.classifier, o.detector; the
/// detector's model hash and "in" are checked), resolve the scores, evaluate.
/// Paths are recorded as given.
ShiftReport ood_shift(const ShiftOptions& o);

/// Terminal table: per family and level the primary AUROC, FPR95, accuracy and
/// flagged share, then a summary (AUROC 0.9 severity, Spearman, flag-error
/// agreement of every score).
std::string format_shift_table(const ShiftReport& r);
/// The same as GitHub Markdown.
std::string format_shift_markdown(const ShiftReport& r);
/// A PNG with one panel per family: AUROC (solid black), classifier accuracy
/// (dashed), flagged share (dotted) against severity, all on [0,1].
void write_shift_plot(const ShiftReport& r, const std::string& path);

}  // namespace ebm
