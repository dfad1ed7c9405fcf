// frechet.h: the Fréchet distance between two Gaussians fitted to feature
// sets, and the judge's penultimate features it is usually computed in (FID
// with a small classifier, the usual MNIST practice).
//
// For N(mu_a, C_a) and N(mu_b, C_b) (Dowson & Landau 1982):
//
//   FD = |mu_a - mu_b|^2 + tr(C_a) + tr(C_b) - 2 tr( (C_a^{1/2} C_b C_a^{1/2})^{1/2} )
//
// The last trace is the one usually written tr( (C_a C_b)^{1/2} ). The two are
// equal: C_a C_b = C_a^{1/2} (C_a^{1/2} C_b C_a^{1/2}) C_a^{-1/2} is similar to
// the symmetric form, so both have the same (real, non-negative) eigenvalues
// lambda_i, and the trace of the square root is sum sqrt(lambda_i) either way
// (for a singular C_a by continuity). C_a C_b itself is not symmetric, so a
// general matrix square root of it (scipy's sqrtm, as the FID reference code
// uses) can return complex parts and loses accuracy when C_a or C_b is
// ill-conditioned. The symmetric form M = C_a^{1/2} C_b C_a^{1/2} is PSD, so
// two symmetric eigendecompositions (torch::linalg_eigh) give it stably:
// C_a^{1/2} = V diag(sqrt(max(w, 0))) V^T, then tr M^{1/2} = sum sqrt(max(eig(M), 0)).
// The clamps remove the tiny negative eigenvalues rounding leaves on
// singular or near-singular covariances (e.g. D > N features).
// Everything is computed in float64.
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "ebm/core/energy.h"

namespace ebm {

/// The Gaussian fitted to a feature set.
struct GaussianStats {
  torch::Tensor mean;  // [D] float64
  torch::Tensor cov;   // [D,D] float64, unbiased (divided by n - 1), symmetric
  int64_t n = 0;       // number of feature vectors it was fitted to
};

/// Mean and unbiased covariance of feats [N,D] (any floating dtype; computed in
/// float64). UsageError unless feats is 2-D with N >= 2 rows (naming the shape)
/// and every value is finite.
GaussianStats gaussian_stats(const torch::Tensor& feats);

/// The Fréchet distance between N(a.mean, a.cov) and N(b.mean, b.cov) (see the
/// top of this file): >= 0 up to rounding, 0 for identical stats, symmetric in
/// a and b. UsageError when the dimensions differ (naming both) or a tensor has
/// the wrong shape.
double frechet_distance(const GaussianStats& a, const GaussianStats& b);

/// A classifier's penultimate features, the space the Fréchet distance of
/// samples is measured in: x [N,1,28,28] (float32 in [0,1]; any [N,C,H,W] the
/// classifier takes) -> [N,D] float64, D = the classifier's feature width
/// (4*width for built-in conv-classifiers, Energy::features()). Batched
/// without autograd (map_batched, kScoringBatch images per pass). The
/// classifier is used as it is: load_model() returns models in eval mode.
/// UsageError when the classifier exposes no features (naming it) or x is not 4-D.
torch::Tensor judge_features(Energy& classifier, const torch::Tensor& x, int64_t batch = kScoringBatch);

}  // namespace ebm
