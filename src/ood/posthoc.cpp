// posthoc.cpp: Mahalanobis, KNN, ReAct, ViM and ODIN, and their fitting and
// validation-only tuning. See posthoc.h.
#include "ebm/ood/posthoc.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>

#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/io/progress.h"
#include "ebm/metrics/metrics.h"
#include "ebm/ood/val_ood.h"

namespace ebm {

using json = nlohmann::json;

const std::vector<std::string>& posthoc_names() {
  static const std::vector<std::string> n{"odin", "mahalanobis", "knn", "vim", "react"};
  return n;
}

bool is_posthoc(const std::string& score) {
  const auto& n = posthoc_names();
  return std::find(n.begin(), n.end(), score) != n.end();
}

namespace {

void check_head(const Energy& e) {
  if (e.num_classes() <= 0)
    throw UsageError("post-hoc detectors need a classifier, but " + e.describe() + " is an energy model");
  const auto [W, b] = e.linear_head();
  if (!W.defined() || !b.defined())
    throw UsageError("post-hoc detectors need a classifier with penultimate features and a linear head; " +
                     e.describe() + " exposes none (built-in conv-classifier models do)");
}

torch::Tensor f64(const torch::Tensor& t) { return t.detach().to(torch::kFloat64); }

// -logsumexp(logits) [M]
torch::Tensor neg_lse(const torch::Tensor& logits) { return -torch::logsumexp(logits, 1); }

}  // namespace

FeatureSet extract_features(Energy& e, const torch::Tensor& x, int64_t batch) {
  check_head(e);
  TORCH_CHECK(x.dim() == 4, "extract_features: x must be [N,C,H,W], got ", x.sizes());
  const auto [W, b] = e.linear_head();
  FeatureSet out;
  out.features = f64(map_batched(x, batch, [&](const torch::Tensor& xb) { return e.features(xb); }));
  TORCH_CHECK(out.features.dim() == 2 && out.features.size(1) == W.size(1), "features must be [N,", W.size(1),
              "], got ", out.features.sizes());
  out.logits = out.features.matmul(f64(W).t()) + f64(b);
  return out;
}

// ---------------------------------------------------------------- Mahalanobis

Mahalanobis Mahalanobis::fit(const torch::Tensor& f_in, const torch::Tensor& labels, int64_t K) {
  TORCH_CHECK(f_in.dim() == 2 && labels.dim() == 1 && labels.size(0) == f_in.size(0),
              "Mahalanobis::fit: f must be [N,D] and labels [N], got ", f_in.sizes(), " and ", labels.sizes());
  const auto f = f64(f_in);
  const int64_t D = f.size(1);
  Mahalanobis m;
  m.means = torch::zeros({K, D}, torch::kFloat64);
  auto centred = torch::empty_like(f);
  for (int64_t k = 0; k < K; ++k) {
    const auto idx = labels.eq(k).nonzero().squeeze(1);
    if (idx.numel() == 0) throw DataError("Mahalanobis: class " + std::to_string(k) + " has no fit images");
    const auto fk = f.index_select(0, idx);
    m.means[k] = fk.mean(0);
    centred.index_copy_(0, idx, fk - m.means[k]);
  }
  // The pooled (tied) covariance, maximum-likelihood normalisation (1/N) as in Lee et al.
  const auto cov = centred.t().matmul(centred) / double(f.size(0));
  m.precision = torch::linalg::pinv(cov, 1e-10, /*hermitian=*/true);
  return m;
}

torch::Tensor Mahalanobis::score(const torch::Tensor& f_in) const {
  const auto f = f64(f_in);
  // d_k = (f - mu_k)^T P (f - mu_k) = f P f - 2 f P mu_k + mu_k P mu_k, for all k at once.
  const auto fP = f.matmul(precision);                            // [M,D]
  const auto fPf = (fP * f).sum(1, true);                         // [M,1]
  const auto muP = means.matmul(precision);                       // [K,D]
  const auto muPmu = (muP * means).sum(1).unsqueeze(0);           // [1,K]
  const auto d = fPf - 2 * fP.matmul(means.t()) + muPmu;          // [M,K]
  return std::get<0>(d.min(1));
}

// ---------------------------------------------------------------- KNN

Knn Knn::fit(const torch::Tensor& f, int64_t k) {
  TORCH_CHECK(f.dim() == 2, "Knn::fit: f must be [N,D], got ", f.sizes());
  if (k < 1 || k > f.size(0))
    throw UsageError("knn: k must be in [1, " + std::to_string(f.size(0)) + "], got " + std::to_string(k));
  Knn m;
  m.bank = torch::nn::functional::normalize(f64(f), torch::nn::functional::NormalizeFuncOptions().dim(1));
  m.k = k;
  return m;
}

torch::Tensor Knn::score(const torch::Tensor& f) const {
  const auto q = torch::nn::functional::normalize(f64(f), torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::vector<torch::Tensor> out;
  // Blocks of queries keep the [M,N] distance matrix small.
  for (int64_t i = 0; i < q.size(0); i += 512) {
    const auto qb = q.narrow(0, i, std::min<int64_t>(512, q.size(0) - i));
    // |q - b|^2 = 2 - 2 q.b for unit vectors
    const auto d2 = (2 - 2 * qb.matmul(bank.t())).clamp_min(0);
    const auto kth = std::get<0>(d2.topk(k, 1, /*largest=*/false, /*sorted=*/true)).select(1, k - 1);
    out.push_back(kth.sqrt());
  }
  return out.empty() ? torch::empty({0}, torch::kFloat64) : torch::cat(out);
}

// ---------------------------------------------------------------- ReAct

React React::fit(const torch::Tensor& f, const torch::Tensor& W, const torch::Tensor& b, double percentile) {
  if (!(percentile > 0 && percentile <= 100))
    throw UsageError("react: percentile must be in (0,100], got " + std::to_string(percentile));
  React m;
  m.percentile = percentile;
  m.clip = torch::quantile(f64(f).flatten(), percentile / 100.0).item<double>();
  m.W = f64(W);
  m.b = f64(b);
  return m;
}

torch::Tensor React::score(const torch::Tensor& f) const {
  return neg_lse(f64(f).clamp_max(clip).matmul(W.t()) + b);
}

// ---------------------------------------------------------------- ViM

Vim Vim::fit(const torch::Tensor& f_in, const torch::Tensor& W_in, const torch::Tensor& b_in, int64_t dim) {
  const auto f = f64(f_in);
  const int64_t D = f.size(1);
  if (dim < 1 || dim >= D)
    throw UsageError("vim: the principal dimension must be in [1, " + std::to_string(D - 1) + "], got " +
                     std::to_string(dim));
  Vim m;
  m.W = f64(W_in);
  m.b = f64(b_in);
  m.dim = dim;
  // o = -pinv(W) b: the point whose logits are zero, the origin of the feature space.
  m.origin = -torch::linalg::pinv(m.W).matmul(m.b);
  const auto c = f - m.origin;
  // Principal directions of the (uncentred, about o) second moment, as in the ViM paper.
  const auto [evals, evecs] = torch::linalg::eigh(c.t().matmul(c) / double(f.size(0)), "L");
  // eigh sorts ascending: the first D - dim eigenvectors span the residual space.
  m.perp = evecs.narrow(1, 0, D - dim).contiguous();
  const auto res = m.residual(f);
  const auto maxlogit = std::get<0>((f.matmul(m.W.t()) + m.b).max(1));
  const double mr = res.mean().item<double>();
  m.alpha = mr > 0 ? maxlogit.mean().item<double>() / mr : 1.0;
  return m;
}

torch::Tensor Vim::residual(const torch::Tensor& f) const { return (f64(f) - origin).matmul(perp).norm(2, 1); }

torch::Tensor Vim::score(const torch::Tensor& f) const {
  const auto logits = f64(f).matmul(W.t()) + b;
  return alpha * residual(f) - torch::logsumexp(logits, 1);
}

// ---------------------------------------------------------------- ODIN

namespace {

// ODIN's loss as an Energy, -log max_k softmax(logits(x) / T)_k [B], so that its
// input gradient comes from the one rule for it (core/energy.h's energy_grad).
class OdinLoss : public Energy {
 public:
  OdinLoss(Energy& base, double t) : base_(base), t_(t) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    return -std::get<0>(torch::log_softmax(base_.logits(x) / t_, 1).max(1));
  }
  std::string describe() const override { return "odin-loss(" + base_.describe() + ")"; }

 private:
  Energy& base_;
  double t_;
};

}  // namespace

torch::Tensor odin_score(Energy& e, const torch::Tensor& x, double T, double eps, int64_t batch) {
  if (e.num_classes() <= 0) throw UsageError("odin needs a classifier, but " + e.describe() + " is an energy model");
  if (!(T > 0)) throw UsageError("odin: temperature must be > 0, got " + std::to_string(T));
  if (!(eps >= 0)) throw UsageError("odin: eps must be >= 0, got " + std::to_string(eps));
  OdinLoss loss(e, T);
  return f64(map_batched(x, batch, [&](const torch::Tensor& xb) {
    // Step against the loss's gradient: raises the top softmax score, more for
    // in-distribution inputs than for OOD ones (Liang et al. 2018, eq. 2).
    const auto xp = eps > 0 ? xb - eps * energy_grad(loss, xb).sign() : xb;
    return -std::get<0>(torch::softmax(f64(e.logits(xp)) / T, 1).max(1));
  }));
}

// ---------------------------------------------------------------- fitted model

std::vector<torch::Tensor> PosthocModel::scores(Energy& e, const std::vector<std::string>& names, const torch::Tensor& x,
                                                 int64_t batch) const {
  if (!fitted) throw UsageError("post-hoc scores need fit_posthoc() first");
  // One feature pass serves every feature-based detector.
  torch::Tensor f;
  auto features = [&]() -> const torch::Tensor& {
    if (!f.defined()) f = extract_features(e, x, batch).features;
    return f;
  };
  std::vector<torch::Tensor> out;
  for (const auto& name : names) {
    if (name == "odin") out.push_back(odin_score(e, x, odin_temperature, odin_eps, batch));
    else if (name == "mahalanobis") out.push_back(mahalanobis.score(features()));
    else if (name == "knn") out.push_back(knn.score(features()));
    else if (name == "react") out.push_back(react.score(features()));
    else if (name == "vim") out.push_back(vim.score(features()));
    else throw UsageError("unknown post-hoc score '" + name + "'");
  }
  return out;
}

PosthocModel fit_posthoc(Energy& e, const PosthocOptions& o) {
  check_head(e);
  e.set_training(false);
  const auto [W, b] = e.linear_head();
  DatasetOptions d;
  d.root = o.root();
  d.split = "fit";
  d.n = o.n_fit();
  const Dataset fit = load_dataset(o.in(), d);
  if (!fit.labels.defined()) throw DataError("'" + o.in() + "' has no labels; post-hoc detectors need them");
  // Mahalanobis fits one Gaussian per class of the model: the dataset's labels must be those classes
  // (an attribute model, e.g. thickness terciles of MNIST, has classes the labels do not name).
  if (fit.labels.max().item<int64_t>() >= e.num_classes() || (fit.num_classes > 0 && fit.num_classes != e.num_classes()))
    throw DataError("'" + o.in() + "' has " + std::to_string(fit.num_classes) + " label classes but " + e.describe() +
                    " has " + std::to_string(e.num_classes()) + "; post-hoc detectors need a classifier of the dataset's labels");
  d.split = "val";
  d.n = o.n_val();
  const Dataset val = load_dataset(o.in(), d);

  // Validation OOD (val_ood.h): corruptions of the tail of the fit split.
  std::vector<std::pair<std::string, torch::Tensor>> vood;
  uint64_t s = o.seed();
  for (const auto& k : val_ood_kinds()) vood.emplace_back(k, validation_ood(k, o.in(), o.n_val(), s++, o.root()));
  const int64_t n_src = vood.front().second.size(0);

  // Units of work: 2 + kinds feature passes, then every candidate of knn, react, vim and odin.
  const int64_t steps = 2 + int64_t(vood.size()) + int64_t(o.knn_k().size() + o.react_percentile().size() +
                                                      o.vim_dim_fraction().size() +
                                                      o.odin_temperature().size() * o.odin_eps().size());
  std::unique_ptr<Progress> bar;
  if (o.progress()) bar = std::make_unique<Progress>("post-hoc fit", steps, 5.0);
  int64_t done = 0;
  auto tick = [&](const std::string& what) {
    if (bar) bar->update(++done, what);
  };
  const auto F = extract_features(e, fit.images, o.batch()).features;
  tick("features of " + std::to_string(fit.size()) + " fit images");
  const auto Fval = extract_features(e, val.images, o.batch()).features;
  tick("features of the val split");
  std::vector<torch::Tensor> Food;
  for (const auto& [k, x] : vood) {
    Food.push_back(extract_features(e, x, o.batch()).features);
    tick("features of " + k);
  }

  // Mean AUROC of in-distribution val against every validation-OOD kind.
  auto val_auroc = [&](const std::function<torch::Tensor(const torch::Tensor&)>& score) {
    const auto sin = score(Fval);
    double m = 0;
    for (const auto& fo : Food) m += ood_metrics(sin, score(fo)).auroc;
    return m / double(Food.size());
  };

  PosthocModel pm;
  json tried = json::object();
  pm.mahalanobis = Mahalanobis::fit(F, fit.labels, e.num_classes());
  tried["mahalanobis"] = {{"auroc", val_auroc([&](const torch::Tensor& f) { return pm.mahalanobis.score(f); })}};

  double best = -1;
  tried["knn"] = json::array();
  for (int64_t k : o.knn_k()) {
    if (k > F.size(0)) continue;
    Knn m = Knn::fit(F, k);
    const double a = val_auroc([&](const torch::Tensor& f) { return m.score(f); });
    tried["knn"].push_back({{"k", k}, {"auroc", a}});
    tick("knn k=" + std::to_string(k));
    if (a > best) best = a, pm.knn = m;
  }
  if (best < 0) throw UsageError("knn: no candidate k fits " + std::to_string(F.size(0)) + " fit images");

  best = -1;
  tried["react"] = json::array();
  for (double p : o.react_percentile()) {
    React m = React::fit(F, W, b, p);
    const double a = val_auroc([&](const torch::Tensor& f) { return m.score(f); });
    tried["react"].push_back({{"percentile", p}, {"clip", m.clip}, {"auroc", a}});
    tick("react");
    if (a > best) best = a, pm.react = m;
  }

  best = -1;
  tried["vim"] = json::array();
  const int64_t D = F.size(1);
  for (double frac : o.vim_dim_fraction()) {
    const int64_t dim = std::clamp<int64_t>(int64_t(std::lround(frac * double(D))), 1, D - 1);
    Vim m = Vim::fit(F, W, b, dim);
    const double a = val_auroc([&](const torch::Tensor& f) { return m.score(f); });
    tried["vim"].push_back({{"dim", dim}, {"auroc", a}});
    tick("vim dim=" + std::to_string(dim));
    if (a > best) best = a, pm.vim = m;
  }

  best = -1;
  tried["odin"] = json::array();
  for (double T : o.odin_temperature())
    for (double eps : o.odin_eps()) {
      const auto sin = odin_score(e, val.images, T, eps, o.batch());
      double a = 0;
      for (const auto& [k, x] : vood) a += ood_metrics(sin, odin_score(e, x, T, eps, o.batch())).auroc;
      a /= double(vood.size());
      tried["odin"].push_back({{"temperature", T}, {"eps", eps}, {"auroc", a}});
      tick("odin T=" + std::to_string(int64_t(T)) + " eps=" + std::to_string(eps));
      if (a > best) best = a, pm.odin_temperature = T, pm.odin_eps = eps;
    }

  if (bar) bar->finish();
  std::string kinds;
  for (const auto& k : val_ood_kinds()) kinds += (kinds.empty() ? "" : ", ") + k;
  pm.choices = {{"knn", {{"k", pm.knn.k}}},
                {"react", {{"percentile", pm.react.percentile}, {"clip", pm.react.clip}}},
                {"vim", {{"dim", pm.vim.dim}, {"alpha", pm.vim.alpha}}},
                {"odin", {{"temperature", pm.odin_temperature}, {"eps", pm.odin_eps}}},
                {"fitted_on", o.in() + "/fit (" + std::to_string(fit.size()) + " images)"},
                {"chosen_on", o.in() + "/val (" + std::to_string(val.size()) + " images) against " + kinds +
                                  " of " + std::to_string(n_src) + " " + o.in() + "/fit images"},
                {"rule", "the candidate with the highest mean validation AUROC"},
                {"validation", tried}};
  pm.fitted = true;
  return pm;
}

}  // namespace ebm
