// frechet.cpp: Gaussian stats of feature sets and their Fréchet distance. See frechet.h.
#include "ebm/metrics/frechet.h"

#include <torch/torch.h>

#include <sstream>
#include <string>

#include "ebm/core/common.h"

namespace ebm {

namespace {

std::string shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Symmetric part: rounding makes products of symmetric matrices slightly
// asymmetric, and eigh reads only one triangle.
torch::Tensor sym(const torch::Tensor& m) { return 0.5 * (m + m.t()); }

// Square root of a symmetric PSD matrix C [D,D] by C = V diag(w) V^T:
// V diag(sqrt(max(w, 0))) V^T [D,D].
torch::Tensor sqrt_psd(const torch::Tensor& c) {
  auto [w, v] = torch::linalg_eigh(sym(c));
  return (v * w.clamp_min(0).sqrt().unsqueeze(0)).mm(v.t());
}

void check_stats(const GaussianStats& s, const char* which) {
  if (!s.mean.defined() || !s.cov.defined() || s.mean.dim() != 1 || s.cov.dim() != 2 ||
      s.cov.size(0) != s.mean.size(0) || s.cov.size(1) != s.mean.size(0))
    throw UsageError(std::string("frechet_distance: stats ") + which + " must have mean [D] and cov [D,D], got " +
                     (s.mean.defined() ? shape(s.mean) : "undefined") + " and " +
                     (s.cov.defined() ? shape(s.cov) : "undefined"));
}

}  // namespace

GaussianStats gaussian_stats(const torch::Tensor& feats) {
  if (!feats.defined() || feats.dim() != 2)
    throw UsageError("gaussian_stats: features must be [N,D], got " + (feats.defined() ? shape(feats) : "undefined"));
  if (feats.size(0) < 2)
    throw UsageError("gaussian_stats: needs N >= 2 feature vectors for a covariance, got N = " +
                     std::to_string(feats.size(0)) + " (shape " + shape(feats) + ")");
  const auto f = feats.detach().to(torch::kFloat64);
  if (!torch::isfinite(f).all().item<bool>()) {
    const int64_t row = torch::isfinite(f).all(1).logical_not().nonzero()[0][0].item<int64_t>();
    throw UsageError("gaussian_stats: feature vector #" + std::to_string(row) + " has a non-finite value");
  }
  GaussianStats s;
  s.n = f.size(0);
  s.mean = f.mean(0);
  const auto c = f - s.mean;
  s.cov = sym(c.t().mm(c) / double(s.n - 1));
  return s;
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  check_stats(a, "a");
  check_stats(b, "b");
  if (a.mean.size(0) != b.mean.size(0))
    throw UsageError("frechet_distance: the two feature dimensions differ (" + std::to_string(a.mean.size(0)) +
                     " vs " + std::to_string(b.mean.size(0)) + ")");
  const auto ma = a.mean.to(torch::kFloat64), mb = b.mean.to(torch::kFloat64);
  const auto ca = sym(a.cov.to(torch::kFloat64)), cb = sym(b.cov.to(torch::kFloat64));
  const auto ra = sqrt_psd(ca);
  // M = Ca^{1/2} Cb Ca^{1/2}: symmetric PSD, same eigenvalues as Ca Cb (frechet.h).
  const auto m = sym(ra.mm(cb).mm(ra));
  const double tr_sqrt = torch::linalg_eigvalsh(m).clamp_min(0).sqrt().sum().item<double>();
  const double dmu2 = (ma - mb).pow(2).sum().item<double>();
  return dmu2 + ca.trace().item<double>() + cb.trace().item<double>() - 2.0 * tr_sqrt;
}

torch::Tensor judge_features(Energy& classifier, const torch::Tensor& x, int64_t batch) {
  if (!x.defined() || x.dim() != 4)
    throw UsageError("judge_features: images must be [N,C,H,W], got " + (x.defined() ? shape(x) : "undefined"));
  if (x.size(0) == 0) throw UsageError("judge_features: no images (shape " + shape(x) + ")");
  const auto f = map_batched(x, batch, [&](const torch::Tensor& xb) {
    auto fb = classifier.features(xb);
    if (!fb.defined())
      throw UsageError("judge_features: " + classifier.describe() +
                       " exposes no penultimate features (built-in conv-classifier models do)");
    return fb.flatten(1);
  });
  return f.detach().to(torch::kFloat64);
}

}  // namespace ebm
