// metrics.h: the one metrics module for OOD detection (and any binary scoring).
//
// Convention everywhere: a score is "higher = more OOD". A detector accepts an
// image as in-distribution when its score is <= a threshold t and flags it OOD
// when the score is > t. Scores must be finite (NaN/Inf -> UsageError); each of
// the two sets needs at least one score.
//
// Definitions, each validated against scikit-learn 1.2 within 1e-9 on the
// fixtures written by scripts/make_metric_fixtures.py (tests/test_metrics.cpp).
// With y_ood = 1 for OOD and 0 for in-distribution, s = the scores:
//
//   auroc            roc_auc_score(y_ood, s): the probability that a random OOD
//                    image scores higher than a random in-distribution image,
//                    ties counted half (Mann-Whitney). The same number with
//                    in-distribution positive and score -s. 0.5 = chance.
//   aupr_in          average_precision_score(1 - y_ood, -s): in-distribution is
//                    the positive class, ranked by -s.
//   aupr_out         average_precision_score(y_ood, s): OOD is the positive class.
//                    Average precision is step-wise, AP = sum_k (R_k - R_{k-1}) P_k
//                    over the distinct thresholds in decreasing order (no
//                    interpolation); tied scores form one step. AUPR depends
//                    strongly on the in:OOD count ratio; always report both n.
//   fpr95            the fraction of OOD accepted as in-distribution at the
//                    threshold that accepts 95% of in-distribution (positive =
//                    in-distribution; Hendrycks & Gimpel, Liu et al.). Precisely:
//                    fpr, tpr = roc_curve(1 - y_ood, -s, drop_intermediate=False)
//                    and fpr95 = fpr[first index where tpr >= 0.95]. In terms of s:
//                    t = the smallest score value v with #{in: s_in <= v} >= 0.95*n_in
//                    (compared as count/n_in >= 0.95 in double precision), and
//                    fpr95 = #{ood: s_ood <= t} / n_ood. Images tied at t are
//                    accepted, whichever class they belong to. (OpenOOD and
//                    PyTorch-OOD use the other convention: in-distribution
//                    rejected at 95% OOD recall. ebmkit never does.)
//   detection_error  min over every threshold of the ROC above (including
//                    "accept nothing") of 0.5*(1 - tpr) + 0.5*fpr: the best
//                    balanced misclassification rate. 0.5 = chance.
//
// roc_curve() equals sklearn.metrics.roc_curve(y, s, drop_intermediate=False),
// except that thresholds[0] is +inf (as in sklearn >= 1.3; sklearn 1.2 writes
// max(s) + 1 there).
//
// Bootstrap confidence intervals (optional): resample the in-distribution and
// the OOD scores independently with replacement, `resamples` times, from a
// seeded std::mt19937_64; the interval is the [2.5, 97.5] percentile of the
// resampled metric (linear interpolation, numpy's default). Same seed = same
// interval.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

/// ROC points for a binary problem, one per distinct threshold (plus the
/// leading "accept nothing" point (0,0) at threshold +inf).
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;  // thresholds decreasing
};

/// sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False) with
/// thresholds[0] = +inf. labels: 1 = positive, 0 = negative; both classes needed.
/// A point (fpr[i], tpr[i]) is the rate of negatives / positives with score >= thresholds[i].
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);

/// sklearn.metrics.roc_auc_score(labels, scores): ties count half.
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);

/// sklearn.metrics.average_precision_score(labels, scores): step-wise AP.
double average_precision(const std::vector<double>& scores, const std::vector<int>& labels);

/// The OOD metrics of one (in-distribution, OOD) pair; see the top of this file.
struct OodMetrics {
  double auroc = 0, aupr_in = 0, aupr_out = 0, fpr95 = 0, detection_error = 0;
  int64_t n_in = 0, n_ood = 0;
  /// {"auroc","aupr_in","aupr_out","fpr95","detection_error"}
  nlohmann::json to_json() const;
};

/// All OOD metrics from one sort of the scores. s_in, s_ood: higher = more OOD.
OodMetrics ood_metrics(const std::vector<double>& s_in, const std::vector<double>& s_ood);
/// Tensor overload: s_in [N_in], s_ood [N_ood] (any float dtype).
OodMetrics ood_metrics(const torch::Tensor& s_in, const torch::Tensor& s_ood);

/// FPR at a general in-distribution acceptance rate: the fraction of OOD with
/// score <= t, t the smallest score value accepting >= tpr_level of the
/// in-distribution set (fpr95 = fpr_at_tpr(.., .., 0.95)). tpr_level in (0,1].
double fpr_at_tpr(const std::vector<double>& s_in, const std::vector<double>& s_ood, double tpr_level);

/// ROC of an OOD detector with in-distribution positive: tpr = fraction of
/// in-distribution accepted, fpr = fraction of OOD accepted, as the threshold
/// on s rises from "accept nothing" to "accept all" (the curve fpr95 reads).
/// thresholds are on s, increasing: point i accepts s <= thresholds[i]
/// (thresholds[0] = -inf). Equals roc_curve(1 - y_ood, -s) with thresholds negated.
RocCurve ood_roc_curve(const std::vector<double>& s_in, const std::vector<double>& s_ood);

struct BootstrapOptions {
  /// Number of resamples (0 = no intervals).
  TORCH_ARG(int64_t, resamples) = 1000;
  /// Two-sided level of the interval.
  TORCH_ARG(double, level) = 0.95;
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Percentile bootstrap intervals of every metric in OodMetrics.
struct OodMetricsCI {
  /// {lo, hi} of each metric
  double auroc[2], aupr_in[2], aupr_out[2], fpr95[2], detection_error[2];
  int64_t resamples = 0;
  double level = 0.95;
  /// {"auroc":[lo,hi], ..., "resamples", "level"}
  nlohmann::json to_json() const;
};

OodMetricsCI ood_metrics_ci(const std::vector<double>& s_in, const std::vector<double>& s_ood,
                            const BootstrapOptions& o = {});

/// numpy.percentile(v, q) with linear interpolation; q in [0,100]; v non-empty.
double percentile(std::vector<double> v, double q);

/// A tensor of scores [N] as doubles (checked 1-D).
std::vector<double> to_vector(const torch::Tensor& t);

// ---------------------------------------------------------------- classification

/// Top-1 accuracy: the share of rows whose prediction equals its label.
/// `pred` is logits [N,K] (argmax over dim 1) or predicted classes [N] (int);
/// labels [N] int. Throws UsageError on a shape mismatch or N = 0.
double accuracy(const torch::Tensor& pred, const torch::Tensor& labels);

}  // namespace ebm
