// posthoc.h: the standard post-hoc OOD detectors that PyTorch-OOD and OpenOOD
// ship, on an ebmkit classifier, so that energy-based detection is compared
// with the field on the same network, data and metrics.
//
// Notation (shapes):
//   f       penultimate features, Energy::features(x): [N,D] (float64 here)
//   W, b    the linear head, Energy::linear_head(): W [K,D], b [K];
//           logits = f W^T + b  [N,K]
// Every score is "higher = more OOD".
//
//   mahalanobis  min_k (f - mu_k)^T Sigma^-1 (f - mu_k), class means mu_k and one
//                shared (tied) covariance Sigma over all classes, fitted on the
//                in-distribution fit split (Lee et al. 2018, without input
//                preprocessing or layer ensembles)
//   knn          distance from f/|f| to its k-th nearest neighbour among the
//                normalised fit-split features (Sun et al. 2022)
//   react        the free energy -logsumexp(W min(f, c) + b) with features
//                clipped at c = the `percentile`-th percentile of all fit-split
//                activations (Sun et al. 2021)
//   vim          alpha * |P_perp (f - o)| - logsumexp(logits): o = -pinv(W) b,
//                P_perp projects onto the complement of the top-`dim` principal
//                directions of the fit-split (f - o), and alpha = mean max-logit /
//                mean residual norm on the fit split (Wang et al. 2022). The
//                score is a monotone transform of ViM's virtual-logit softmax.
//   odin         -max softmax(logits(x') / T) with x' = x - eps * sign(grad_x
//                of -log max softmax(logits(x) / T)) (Liang et al. 2018)
//
// Hyperparameters (k, percentile, dim, T, eps) are chosen by tune_posthoc() on
// VALIDATION data only: the in-distribution val split against corruptions of
// the in-distribution fit split (val_ood.h). No reported OOD set is involved.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <string>
#include <vector>

#include "ebm/core/energy.h"

namespace ebm {

/// The post-hoc detectors, in table order.
const std::vector<std::string>& posthoc_names();
/// True for a name in posthoc_names().
bool is_posthoc(const std::string& score);

/// Features and logits of x [N,C,H,W] in batches, without autograd:
/// features [N,D] and logits [N,K], both float64. UsageError when `e` is not a
/// classifier exposing features (Energy::features).
struct FeatureSet {
  torch::Tensor features;  // [N,D] float64
  torch::Tensor logits;    // [N,K] float64
};
FeatureSet extract_features(Energy& e, const torch::Tensor& x, int64_t batch = kScoringBatch);

/// Class means and the tied precision of Gaussian class-conditionals.
struct Mahalanobis {
  torch::Tensor means;      // [K,D]
  torch::Tensor precision;  // [D,D], pinv of the pooled within-class covariance
  /// f [N,D], labels [N] int64 in 0..K-1 (every class present).
  static Mahalanobis fit(const torch::Tensor& f, const torch::Tensor& labels, int64_t num_classes);
  /// f [M,D] -> [M]: min over classes of the squared Mahalanobis distance.
  torch::Tensor score(const torch::Tensor& f) const;
};

/// Deep nearest neighbours on L2-normalised features.
struct Knn {
  torch::Tensor bank;  // [N,D], unit rows
  int64_t k = 50;
  /// f [N,D]; 1 <= k <= N.
  static Knn fit(const torch::Tensor& f, int64_t k);
  /// f [M,D] -> [M]: Euclidean distance of f/|f| to its k-th nearest bank row.
  torch::Tensor score(const torch::Tensor& f) const;
};

/// Rectified activations (ReAct) followed by the free energy.
struct React {
  double clip = 0;        // c
  double percentile = 90;
  torch::Tensor W, b;     // [K,D], [K]
  /// c = percentile (0,100] of every entry of f [N,D].
  static React fit(const torch::Tensor& f, const torch::Tensor& W, const torch::Tensor& b, double percentile);
  /// f [M,D] -> [M].
  torch::Tensor score(const torch::Tensor& f) const;
};

/// Virtual-logit matching (ViM).
struct Vim {
  torch::Tensor origin;  // [D]
  torch::Tensor perp;    // [D,D-dim], orthonormal basis of the residual space
  double alpha = 1;
  int64_t dim = 0;
  torch::Tensor W, b;
  /// f [N,D]; 1 <= dim < D.
  static Vim fit(const torch::Tensor& f, const torch::Tensor& W, const torch::Tensor& b, int64_t dim);
  /// |P_perp (f - o)| [M]
  torch::Tensor residual(const torch::Tensor& f) const;
  /// f [M,D] -> [M].
  torch::Tensor score(const torch::Tensor& f) const;
};

/// ODIN on x [N,C,H,W] -> [N]; temperature > 0, eps >= 0 (pixels in [0,1]).
torch::Tensor odin_score(Energy& e, const torch::Tensor& x, double temperature, double eps,
                         int64_t batch = kScoringBatch);

/// Every post-hoc detector fitted on one classifier, with its chosen
/// hyperparameters and the data each choice was made on.
struct PosthocModel {
  Mahalanobis mahalanobis;
  Knn knn;
  React react;
  Vim vim;
  double odin_temperature = 1000, odin_eps = 0.0014;
  /// {"knn":{"k":..},"react":{"percentile":..},"vim":{"dim":..},"odin":{"temperature","eps"},
  ///  "fitted_on","chosen_on","validation_auroc":{...}}
  nlohmann::json choices = nlohmann::json::object();
  bool fitted = false;
  /// The scores `names` (posthoc_names) of x [N,C,H,W], each [N] float64, in
  /// that order; the features are extracted once for all of them.
  std::vector<torch::Tensor> scores(Energy& e, const std::vector<std::string>& names, const torch::Tensor& x,
                                    int64_t batch = kScoringBatch) const;
};

struct PosthocOptions {
  /// In-distribution dataset: statistics from its fit split, choices on its
  /// val split against corruptions of its fit split.
  TORCH_ARG(std::string, in) = "fashion-mnist";
  /// Fit-split images used for the statistics (the KNN bank holds them all).
  TORCH_ARG(int64_t, n_fit) = 10000;
  /// Validation images per side (in-distribution val and each corruption).
  TORCH_ARG(int64_t, n_val) = 1000;
  /// Candidate hyperparameters; the one with the best mean validation AUROC wins.
  TORCH_ARG(std::vector<int64_t>, knn_k) = std::vector<int64_t>{1, 10, 50, 200};
  TORCH_ARG(std::vector<double>, react_percentile) = std::vector<double>{80, 90, 95, 99};
  /// ViM's principal dimensions, as fractions of D.
  TORCH_ARG(std::vector<double>, vim_dim_fraction) = std::vector<double>{0.25, 0.5, 0.75};
  TORCH_ARG(std::vector<double>, odin_temperature) = std::vector<double>{1, 10, 100, 1000};
  TORCH_ARG(std::vector<double>, odin_eps) = std::vector<double>{0, 0.0005, 0.001, 0.002, 0.004};
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(int64_t, batch) = kScoringBatch;
  TORCH_ARG(std::string, root) = "";
  /// Progress on stderr (ebm::Progress): feature passes, then each candidate.
  TORCH_ARG(bool, progress) = true;
};

/// Fit every post-hoc detector on `e` and choose its hyperparameters on
/// validation data only (see the top of this file).
PosthocModel fit_posthoc(Energy& e, const PosthocOptions& o);

}  // namespace ebm
