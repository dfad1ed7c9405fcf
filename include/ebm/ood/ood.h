// ood.h: out-of-distribution detection = scores + metrics (metrics.h) +
// threshold calibration. Everything is a thin layer on an Energy.
//
// Scores (every one "higher = more OOD"):
//   energy     the model's energy E(x). For a classifier (num_classes() > 0) the
//              free energy -T*logsumexp(logits/T) at ScoreOptions::temperature
//              (Liu et al. 2020); for other energies E(x) itself (T unused).
//   msp        -max_k softmax(logits)_k   (Hendrycks & Gimpel; classifiers only;
//              the temperature does not apply)
//   maxlogit   -max_k logits_k            (classifiers only)
//   grad-norm  ||grad_x E(x)||_2 per image, E as in "energy" (the JEM-style
//              input-gradient norm; the only score that needs autograd)
//   energy-complexity  energy minus the input's PNG length in nats (Serra et al.
//              2020's complexity-corrected score; see png_complexity_nats)
//   combined   energy-complexity, gated by the energy: an input whose energy
//              exceeds every in-distribution VALIDATION energy (E > E_val_max)
//              scores GATE + (E - mean)/sd, above any ungated value; every other
//              input scores (energy-complexity - mean)/sd. Energy alone catches
//              inputs far from the data (noise) but favours simple images (MNIST
//              under a Fashion-MNIST model, constants); the complexity-corrected
//              score catches those but is swamped by the PNG length of noise.
//              The gate costs ~1/(n_val+1) of in-distribution inputs (conformal),
//              and every statistic comes from the validation split: no OOD data.
//   odin, mahalanobis, knn, vim, react
//              the standard post-hoc detectors (ood/posthoc.h), for built-in
//              classifiers; fitted on the in-distribution fit split, their
//              hyperparameters chosen on validation OOD (ood/val_ood.h) only
//   free-energy  an alias of "energy" for classifiers (DESIGN.md's CLI name);
//              reports and detectors call it "energy".
// msp, maxlogit and free-energy on a non-classifier are a UsageError.
//
// Evaluation (evaluate_ood) scores the in-distribution TEST split against the
// OOD sets' test splits (synthetic sets: `n_ood` images, default 2000, from
// `seed`), or, for choices, the VALIDATION split against validation OOD only
// (val_ood.h). Reports group the sets as near / far (ood_group) and leave the
// sets a model has seen (seen_in_training) out of their means. Calibration
// (calibrate) uses the validation split, which trainers hold out (data.h),
// never the test split.
//
// A Detector flags x as OOD when score(x) > threshold, where threshold is the
// k-th smallest of the n sorted validation scores, k = ceil(percentile/100 * n):
// at least `percentile` % of the validation set is accepted (exactly that
// share when there are no ties). Its p-value is the conformal
//     p(s) = (1 + #{v in val : v >= s}) / (n + 1),
// the chance that an in-distribution image scores at least s. The two agree:
// OOD  <=>  p(s) <= (1 + n - k) / (n + 1). On fresh in-distribution images the
// expected flagged share is (n + 1 - k) / (n + 1), e.g. ~5% at percentile 95.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "ebm/core/energy.h"
#include "ebm/metrics/metrics.h"
#include "ebm/ood/posthoc.h"

namespace ebm {

using json = nlohmann::json;

// ---------------------------------------------------------------- scores

/// Input complexity of each image x[N,C,H,W] in [0,1] -> [N] float64: the
/// length in nats (bytes * 8 * ln 2) of its first channel encoded as an 8-bit
/// PNG (Serra et al. 2020 use a lossless compressor the same way).
torch::Tensor png_complexity_nats(const torch::Tensor& x);

/// Every score name, in table order: energy, msp, maxlogit, grad-norm,
/// energy-complexity (= energy minus png_complexity_nats: the input-complexity
/// corrected score S(x) = -log p(x) - L(x) of Serra et al. 2020, for energies
/// that approximate a negative log-density, such as score-matching energies).
const std::vector<std::string>& score_names();
/// The scores that apply to `e`: every one for built-in classifiers (the
/// post-hoc ones need Energy::linear_head), the classifier scores for other
/// classifiers, else energy, grad-norm, energy-complexity and combined.
std::vector<std::string> scores_for(const Energy& e);
/// "free-energy" -> "energy"; other names unchanged.
std::string canonical_score(const std::string& score);
/// Throw UsageError for an unknown score or a classifier score on a non-classifier.
void check_score(const std::string& score, const Energy& e);
/// "all" -> scores_for(e); "a,b,..." -> those (each checked and made canonical,
/// duplicates dropped).
std::vector<std::string> parse_scores(const std::string& spec, const Energy& e);

/// The standardisation of the "combined" score, fitted on in-distribution
/// validation images only (fit_combined_stats).
struct CombinedStats {
  /// Added to the z-score of gated inputs: above any z-score of energy-complexity.
  static constexpr double kGate = 1e6;
  double energy_mean = 0, energy_sd = 1;
  double energy_max = 0;  // the gate: largest validation energy
  double complexity_mean = 0, complexity_sd = 1;
  bool fitted = false;
  /// {"energy":{"mean","sd","max"},"energy-complexity":{"mean","sd"},"fitted_on","rule"}
  json to_json() const;
  /// DataError naming `source` on a missing field or a non-positive sd.
  static CombinedStats from_json(const json& j, const std::string& source);
  std::string fitted_on;  // e.g. "fashion-mnist/val (5000 images)"
};

struct ScoreOptions {
  /// T of the classifier free energy -T*logsumexp(logits/T) ("energy", "grad-norm"). T > 0.
  TORCH_ARG(double, temperature) = 1.0;
  /// Images per forward pass.
  TORCH_ARG(int64_t, batch) = kScoringBatch;
  /// Needed by "combined" only (a UsageError when it is not fitted).
  TORCH_ARG(CombinedStats, combined) = {};
  /// Needed by the post-hoc scores only (fit_posthoc).
  TORCH_ARG(std::shared_ptr<const PosthocModel>, posthoc) = nullptr;
};

/// Scores of several kinds in one pass over the data (logits computed once per
/// batch; grad-norm in a second, autograd pass).
struct ScoreSet {
  /// score name -> [N] float64, higher = more OOD
  std::vector<std::pair<std::string, torch::Tensor>> scores;
  /// argmax of the logits [N] int64 for classifiers; undefined otherwise
  torch::Tensor predictions;
  const torch::Tensor& at(const std::string& name) const;
};

/// x: [N,C,H,W] in [0,1]. `on_images(k)` is called after each batch with the
/// number of images just scored (for progress). Throws DivergenceError when a
/// score is NaN/Inf.
ScoreSet compute_scores(Energy& e, const torch::Tensor& x, const std::vector<std::string>& scores,
                        const ScoreOptions& o = {}, const std::function<void(int64_t)>& on_images = {});

/// Mean and sd of energy and energy-complexity, and the largest energy, on x_val [N,C,H,W] (in-distribution
/// validation images; N >= 2), for the "combined" score.
CombinedStats fit_combined_stats(Energy& e, const torch::Tensor& x_val, const ScoreOptions& o = {});
/// Load `split` of dataset `in` (at most n images, -1 = all) and fit on it.
CombinedStats fit_combined_stats(Energy& e, const std::string& in, const std::string& split, int64_t n,
                                 const ScoreOptions& o = {}, const std::string& root = "");

/// One score: x [N,C,H,W] -> [N] float64.
torch::Tensor ood_score(Energy& e, const torch::Tensor& x, const std::string& score, const ScoreOptions& o = {});

// ---------------------------------------------------------------- evaluation

/// The model card's "default_score" ("energy" when the card names none).
std::string card_default_score(const std::string& model);
/// T of the classifier free energy: `given` unless NaN, else the card's
/// "temperature", else ScoreOptions' default (1).
double card_temperature(const std::string& model, double given = std::nan(""));

// ---------------------------------------------------------------- protocol

/// The group of OOD set `set` for in-distribution data `in`, as OpenOOD
/// reports them:
///   "near"  another image domain of the same kind: mnist for fashion-mnist and
///           the reverse, letters, and vflip:/invert: transforms;
///   "far"   noise and constants (gaussian, uniform, constant), unrelated real
///           images (icons, photos), and anything else (files).
std::string ood_group(const std::string& in, const std::string& set);

/// The OOD test sets a model has seen before its evaluation, read from its card
/// and, for ensembles, its members' cards:
///   - those that share a generator with its training outliers: the card's
///     "ood_seen" list if it has one; else, when it was trained with
///     synthesised outliers (card "options.outliers", train.h's
///     synthesize_outliers), "uniform" and "invert:*" (its uniform-noise and
///     contrast-inversion generators);
///   - those that one of its choices (score, weights, members) looked at: the
///     card's "ood_choices_saw" list.
/// "invert:*" matches every invert: set.
std::vector<std::string> seen_in_training(const std::string& model_path);
/// True when `set` matches an entry of `seen` (exactly, or "prefix:*").
bool is_seen(const std::string& set, const std::vector<std::string>& seen);

struct OodEvalOptions {
  /// In-distribution dataset; its `split` is scored.
  TORCH_ARG(std::string, in) = "fashion-mnist";
  /// "test": reported figures; the OOD sets are any datasets (their test split).
  /// "val": for choices; the in-distribution val split against validation OOD
  /// only (val_ood.h: pixel-shuffle, patch-shuffle, blur, mixup, or "val-ood"
  /// for all four, each n_ood fit-split images, default 2000). Any other OOD
  /// set on the val split is a UsageError: choices never see test OOD data.
  TORCH_ARG(std::string, split) = "test";
  /// OOD datasets (data.h names or files).
  TORCH_ARG(std::vector<std::string>, ood) = {};
  /// Score names (see parse_scores); one report per score.
  TORCH_ARG(std::vector<std::string>, scores) = std::vector<std::string>{"energy"};
  TORCH_ARG(double, temperature) = ScoreOptions().temperature();
  /// At most this many in-distribution test images (first n of the split); -1 = all.
  TORCH_ARG(int64_t, n_in) = -1;
  /// At most this many images per OOD set; -1 = all (synthetic sets: 2000).
  TORCH_ARG(int64_t, n_ood) = -1;
  /// Seed of the synthetic OOD sets and of the bootstrap.
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(int64_t, batch) = kScoringBatch;
  /// Bootstrap resamples for 95% intervals of every metric; 0 = none.
  TORCH_ARG(int64_t, bootstrap) = 0;
  /// Data directory; empty = data_dir().
  TORCH_ARG(std::string, root) = "";
  /// Show a progress bar on stderr (ebm::Progress).
  TORCH_ARG(bool, progress) = true;
  /// OOD sets the model saw in training or in its choices (seen_in_training):
  /// reported, marked "seen", and left out of every mean.
  TORCH_ARG(std::vector<std::string>, seen) = {};
};

struct OodSetResult {
  std::string name;
  std::string group;  // ood_group(): "near" or "far"
  bool seen = false;  // seen in training or by a choice (seen_in_training)
  int64_t n = 0;
  OodMetrics metrics;
  bool has_ci = false;
  OodMetricsCI ci{};
  double mean_score = 0;
  torch::Tensor scores;  // [n] float64
};

/// One score's evaluation against every OOD set.
struct OodReport {
  std::string score, in;
  std::string split = "test";
  int64_t n_in = 0;
  double temperature = 1.0;
  double mean_score_in = 0;
  /// For "combined": its standardisation (fitted on the validation split).
  CombinedStats combined;
  /// For the post-hoc scores: the fitted detector's choices and the data they
  /// were made on (PosthocModel::choices); null otherwise.
  json choices;
  torch::Tensor in_scores;  // [n_in] float64
  std::vector<OodSetResult> ood;
  /// Unweighted mean of each metric over the OOD sets not seen (n_ood = their
  /// total images); NaN metrics when every set was seen (no mean row is printed).
  OodMetrics mean;
  /// The same mean per group, "near" then "far" (groups with no unseen set are absent).
  std::vector<std::pair<std::string, OodMetrics>> groups;
  /// Classifier accuracy on the in-distribution test split; NaN when the model
  /// is no classifier or the split has no labels.
  double accuracy = std::nan("");
  /// DESIGN.md's schema: {"score","in","n_in","ood":[{"name","n","auroc",
  /// "aupr_in","aupr_out","fpr95",...}],"classifier":{"accuracy"}} plus
  /// "temperature", "mean", "mean_score_in", "detection_error" and CIs.
  json to_json() const;
};

/// Score the in-distribution test split and each OOD set; one report per score.
std::vector<OodReport> evaluate_ood(Energy& e, const OodEvalOptions& o);

/// One report -> its to_json(); several -> {"in","n_in","scores":[...]}.
json reports_json(const std::vector<OodReport>& reports);
/// Plain-text table for a terminal: one report = rows OOD sets + mean, columns
/// AUROC, AUPR-In, AUPR-Out, FPR95, n; several = AUROC and FPR95 of every score
/// side by side.
std::string format_table(const std::vector<OodReport>& reports);
/// The same as GitHub Markdown (several reports: the side-by-side table, then
/// one full table per score).
std::string format_markdown(const std::vector<OodReport>& reports);
/// Long-format CSV: score,in,ood,n_in,n,auroc,aupr_in,aupr_out,fpr95,detection_error
/// (plus a "mean" row per score).
std::string format_csv(const std::vector<OodReport>& reports);
/// Per-image scores for your own analysis: header "set,index,<score>,...", one row
/// per image of the in-distribution test split (set = "in:<name>") and of each OOD
/// set, one column per report (all reports must come from one evaluate_ood call).
std::string format_scores_csv(const std::vector<OodReport>& reports);

/// PNG plots into `dir` (created if needed): for each report and OOD set
/// "<score>-hist-<set>.png" (score histograms, in-distribution filled grey vs
/// OOD black outline, normalised per set, with the 95%-acceptance threshold),
/// and "<score>-roc.png" (ROC per OOD set, in-distribution positive, with the
/// tpr = 0.95 line that fpr95 reads). Returns the paths written.
std::vector<std::string> write_ood_plots(const std::vector<OodReport>& reports, const std::string& dir);

// ---------------------------------------------------------------- calibration

struct CalibrateOptions {
  /// In-distribution dataset; calibration uses `split` (default its validation split).
  TORCH_ARG(std::string, in) = "fashion-mnist";
  TORCH_ARG(std::string, split) = "val";
  TORCH_ARG(std::string, score) = "energy";
  TORCH_ARG(double, temperature) = ScoreOptions().temperature();
  /// Share (in %) of validation in-distribution images accepted; in (0,100].
  TORCH_ARG(double, percentile) = 95.0;
  /// At most this many validation images; -1 = all.
  TORCH_ARG(int64_t, n) = -1;
  TORCH_ARG(int64_t, batch) = kScoringBatch;
  TORCH_ARG(std::string, root) = "";
  TORCH_ARG(bool, progress) = true;
};

struct Detector {
  std::string model;       // model path as given at calibration
  std::string model_hash;  // ebm::model_hash(model)
  std::string score = "energy";
  double temperature = 1.0;
  double percentile = 95.0;
  double threshold = 0.0;  // OOD iff score > threshold
  std::string in, split;   // calibration data
  std::vector<double> val_scores;  // sorted ascending
  CombinedStats combined;          // for score "combined" (fitted on the same split)

  int64_t n_val() const { return static_cast<int64_t>(val_scores.size()); }
  bool is_ood(double s) const { return s > threshold; }
  /// (1 + #{v >= s}) / (n_val + 1)
  double p_value(double s) const;

  /// {"format":"ebmkit-ood-detector","version":1,"model","model_hash","score",
  ///  "temperature","threshold","percentile","n_val","in","split","rule","val_scores"}
  json to_json() const;
  /// Parse and validate; DataError naming `source` and the problem.
  static Detector from_json(const json& j, const std::string& source = "detector");
  static Detector load(const std::string& path);
  /// Written atomically.
  void save(const std::string& path) const;
};

/// Fit the threshold on held-out scores [N] (see the top of this file).
Detector fit_detector(const torch::Tensor& val_scores, double percentile);

/// Score the calibration split with `e` and fit; model/model_hash stay empty.
Detector calibrate(Energy& e, const CalibrateOptions& o);
/// Load the model at `model_path`, calibrate, and record its path and hash.
Detector calibrate_model(const std::string& model_path, const CalibrateOptions& o);

/// DataError unless ebm::model_hash(model_path) equals the detector's hash.
void check_model(const Detector& d, const std::string& model_path);

/// The model a detector file refers to: `override_path` if given, else the
/// recorded path as is, else relative to the detector file's folder.
std::string detector_model_path(const Detector& d, const std::string& detector_path,
                                const std::string& override_path = "");

struct Prediction {
  int64_t index = 0;
  double score = 0;
  bool ood = false;
  double p_value = 1;
  /// {"index","energy","ood","p_value"} ("energy" carries the score value,
  /// whatever the detector's score is; "score" names it).
  json to_json(const std::string& score_name) const;
};

/// Score x [N,C,H,W] in [0,1] with the detector's score and temperature.
std::vector<Prediction> predict(const Detector& d, Energy& e, const torch::Tensor& x, int64_t batch = kScoringBatch);

}  // namespace ebm
