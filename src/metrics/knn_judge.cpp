// knn_judge.cpp: deskewing, exact k-nearest-neighbour search and vote, and
// the val selection of k and deskew. See knn_judge.h.
#include "ebm/metrics/knn_judge.h"

#include <torch/torch.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <utility>

#include "ebm/core/common.h"

namespace ebm {

namespace {

namespace F = torch::nn::functional;

std::string shape_or_undefined(const torch::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

void check_images(const torch::Tensor& x, const char* fn, const char* what) {
  if (!x.defined() || x.dim() != 4 || !x.is_floating_point())
    throw UsageError(std::string(fn) + ": " + what + " must be floating-point [N,C,H,W], got " + shape_or_undefined(x) +
                     (x.defined() ? std::string(" ") + c10::toString(x.scalar_type()) : ""));
}

// Below this vertical second moment (px^2) an image is a horizontal line or a
// dot: its shear is undefined, and dividing by mu_rr would amplify noise.
constexpr double kMinRowMoment = 1e-3;

// Per image of m [N,H,W] (non-negative mass): centre-of-mass row r0 [N] and
// shear alpha [N] (0 where undefined).
std::pair<torch::Tensor, torch::Tensor> shear_moments(const torch::Tensor& m) {
  const auto opt = m.options();
  const int64_t H = m.size(1), W = m.size(2);
  const auto r = torch::arange(H, opt).view({1, H, 1}), c = torch::arange(W, opt).view({1, 1, W});
  const auto mass = m.sum({1, 2});
  const auto safe = mass.clamp_min(1e-300);
  const auto r0 = (m * r).sum({1, 2}) / safe, c0 = (m * c).sum({1, 2}) / safe;
  const auto dr = r - r0.view({-1, 1, 1}), dc = c - c0.view({-1, 1, 1});
  const auto mu_rr = (m * dr * dr).sum({1, 2}) / safe;
  const auto mu_rc = (m * dr * dc).sum({1, 2}) / safe;
  const auto valid = (mass > 0).logical_and(mu_rr >= kMinRowMoment);
  const auto alpha = torch::where(valid, mu_rc / mu_rr.clamp_min(kMinRowMoment), torch::zeros_like(mu_rr));
  return {r0, alpha};
}

}  // namespace

torch::Tensor skew(const torch::Tensor& x) {
  check_images(x, "skew", "images");
  torch::NoGradGuard ng;
  return shear_moments(x.detach().to(torch::kFloat64).clamp_min(0).sum(1)).second;
}

torch::Tensor deskew(const torch::Tensor& x) {
  check_images(x, "deskew", "images");
  torch::NoGradGuard ng;
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
  if (N == 0) return x.detach().clone();
  if (H < 2 || W < 2) throw UsageError("deskew: images must be at least 2x2 pixels, got " + shape_or_undefined(x));
  const auto xd = x.detach();
  auto [r0, alpha] = shear_moments(xd.to(torch::kFloat64).clamp_min(0).sum(1));
  // Output pixel (r, c) reads the input at (r, c + alpha (r - r0)); grid_sample
  // wants (x = column, y = row) normalised to [-1, 1] over pixel centres
  // (align_corners = true).
  const auto o64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto r = torch::arange(H, o64).view({1, H, 1}), c = torch::arange(W, o64).view({1, 1, W});
  const auto src_c = c + alpha.view({-1, 1, 1}) * (r - r0.view({-1, 1, 1}));  // [N,H,W]
  const auto src_r = r.expand({N, H, W});
  const auto grid = torch::stack({2.0 * src_c / double(W - 1) - 1.0, 2.0 * src_r / double(H - 1) - 1.0}, 3);
  const auto out = F::grid_sample(xd, grid.to(xd.scalar_type()),
                                  F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(true));
  // Images deskew leaves alone come back bit for bit, not resampled.
  return torch::where((alpha != 0).view({N, 1, 1, 1}), out, xd);
}

torch::Tensor knn_vote(const torch::Tensor& neighbour_labels, int64_t k, int64_t num_classes) {
  if (!neighbour_labels.defined() || neighbour_labels.dim() != 2 || neighbour_labels.scalar_type() != torch::kInt64)
    throw UsageError("knn_vote: neighbour labels must be int64 [N,k], got " + shape_or_undefined(neighbour_labels));
  if (k < 1 || k > neighbour_labels.size(1))
    throw UsageError("knn_vote: k must be in [1, " + std::to_string(neighbour_labels.size(1)) + "], got " +
                     std::to_string(k));
  if (num_classes < 1) throw UsageError("knn_vote: num_classes must be >= 1, got " + std::to_string(num_classes));
  const auto nl = neighbour_labels.contiguous();
  const auto a = nl.accessor<int64_t, 2>();
  const int64_t N = nl.size(0);
  auto out = torch::empty({N}, torch::kInt64);
  auto o = out.accessor<int64_t, 1>();
  std::vector<int64_t> count(num_classes), first(num_classes);
  for (int64_t i = 0; i < N; ++i) {
    std::fill(count.begin(), count.end(), 0);
    std::fill(first.begin(), first.end(), k);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t l = a[i][j];
      if (l < 0 || l >= num_classes)
        throw UsageError("knn_vote: label " + std::to_string(l) + " (row " + std::to_string(i) + ") is outside [0, " +
                         std::to_string(num_classes) + ")");
      if (count[l]++ == 0) first[l] = j;
    }
    int64_t best = 0;
    for (int64_t l = 1; l < num_classes; ++l)
      if (count[l] > count[best] || (count[l] == count[best] && first[l] < first[best])) best = l;
    o[i] = best;
  }
  return out;
}

KnnJudge::KnnJudge(const torch::Tensor& images, const torch::Tensor& labels, KnnJudgeOptions o) : opts_(o) {
  check_images(images, "KnnJudge", "training images");
  if (!labels.defined() || labels.dim() != 1 || labels.size(0) != images.size(0))
    throw UsageError("KnnJudge: labels must be [M] with M = " + std::to_string(images.size(0)) +
                     " (the number of training images), got " + shape_or_undefined(labels));
  if (o.k() < 1 || o.k() > images.size(0))
    throw UsageError("KnnJudge: k must be in [1, M = " + std::to_string(images.size(0)) + "], got " +
                     std::to_string(o.k()));
  if (o.batch() < 1) throw UsageError("KnnJudge: batch must be >= 1, got " + std::to_string(o.batch()));
  labels_ = labels.detach().to(torch::kInt64).contiguous();
  const int64_t lo = labels_.min().item<int64_t>();
  if (lo < 0) throw UsageError("KnnJudge: labels must be >= 0, got " + std::to_string(lo));
  num_classes_ = labels_.max().item<int64_t>() + 1;
  shape_ = {images.size(1), images.size(2), images.size(3)};
  train_ = flat(images, "training images");
  train_sq_ = train_.pow(2).sum(1);
}

torch::Tensor KnnJudge::flat(const torch::Tensor& x, const char* what) const {
  check_images(x, "KnnJudge", what);
  if (x.size(1) != shape_[0] || x.size(2) != shape_[1] || x.size(3) != shape_[2])
    throw UsageError(std::string("KnnJudge: ") + what + " must be [N," + std::to_string(shape_[0]) + "," +
                     std::to_string(shape_[1]) + "," + std::to_string(shape_[2]) +
                     "] like the training images, got " + shape_or_undefined(x));
  torch::NoGradGuard ng;
  const auto y = opts_.deskew() ? deskew(x) : x.detach();
  return y.to(torch::kFloat64).flatten(1).contiguous();
}

torch::Tensor KnnJudge::neighbours(const torch::Tensor& x, int64_t k) const {
  const int64_t M = train_.size(0);
  if (k < 1 || k > M)
    throw UsageError("KnnJudge::neighbours: k must be in [1, M = " + std::to_string(M) + "], got " + std::to_string(k));
  const auto q = flat(x, "images");
  torch::NoGradGuard ng;
  const int64_t N = q.size(0);
  auto out = torch::empty({N, k}, torch::kInt64);
  auto o = out.accessor<int64_t, 2>();
  std::vector<std::pair<double, int64_t>> pairs;
  for (int64_t s = 0; s < N; s += opts_.batch()) {
    const auto qb = q.narrow(0, s, std::min(opts_.batch(), N - s));
    // Squared L2 distances [b,M]; clamped, since rounding can make |q - t|^2 = 0 slightly negative.
    const auto d = (qb.pow(2).sum(1, true) + train_sq_.unsqueeze(0) - 2.0 * qb.mm(train_.t())).clamp_min(0);
    auto [vals, idx] = d.topk(k, 1, /*largest=*/false, /*sorted=*/true);
    // topk leaves the order of equal distances unspecified, and which of
    // several points tied at the k-th distance it keeps. Rows where more than k
    // points lie within the k-th distance are redone from all of them.
    const auto kth = vals.select(1, k - 1).unsqueeze(1);
    const auto n_within = (d <= kth).sum(1);
    const auto va = vals.accessor<double, 2>();
    const auto ia = idx.accessor<int64_t, 2>();
    const auto nw = n_within.accessor<int64_t, 1>();
    for (int64_t i = 0; i < qb.size(0); ++i) {
      pairs.clear();
      if (nw[i] > k) {
        const auto row = d[i];
        const auto cand = (row <= kth[i][0]).nonzero().select(1, 0);  // ascending indices
        const auto ca = cand.accessor<int64_t, 1>();
        const auto rd = row.index_select(0, cand);
        const auto ra = rd.accessor<double, 1>();
        for (int64_t j = 0; j < cand.size(0); ++j) pairs.emplace_back(ra[j], ca[j]);
      } else {
        for (int64_t j = 0; j < k; ++j) pairs.emplace_back(va[i][j], ia[i][j]);
      }
      std::sort(pairs.begin(), pairs.end());  // by distance, then training index
      for (int64_t j = 0; j < k; ++j) o[s + i][j] = pairs[j].second;
    }
  }
  return out;
}

torch::Tensor KnnJudge::predict(const torch::Tensor& x) const {
  const auto nb = neighbours(x, opts_.k());
  return knn_vote(labels_.index({nb}), opts_.k(), num_classes_);
}

nlohmann::json KnnSelection::to_json() const {
  auto one = [](const KnnCandidate& c) {
    return nlohmann::json{{"k", c.k}, {"deskew", c.deskew}, {"val_accuracy", c.val_accuracy}};
  };
  nlohmann::json all = nlohmann::json::array();
  for (const auto& c : candidates) all.push_back(one(c));
  return {{"n_fit", n_fit}, {"n_val", n_val}, {"chosen", one(chosen)}, {"candidates", all}};
}

KnnSelection select_knn_judge(const torch::Tensor& fit_images, const torch::Tensor& fit_labels,
                              const torch::Tensor& val_images, const torch::Tensor& val_labels,
                              const std::vector<int64_t>& ks, const std::vector<bool>& deskews) {
  check_images(val_images, "select_knn_judge", "val images");
  if (!val_labels.defined() || val_labels.dim() != 1 || val_labels.size(0) != val_images.size(0) ||
      val_images.size(0) == 0)
    throw UsageError("select_knn_judge: val labels must be [V] with V = " + std::to_string(val_images.size(0)) +
                     " > 0 (the number of val images), got " + shape_or_undefined(val_labels));
  if (ks.empty() || deskews.empty()) throw UsageError("select_knn_judge: the grid of k and deskew is empty");
  const int64_t M = fit_images.defined() && fit_images.dim() > 0 ? fit_images.size(0) : 0;
  for (const int64_t k : ks)
    if (k < 1 || k > M)
      throw UsageError("select_knn_judge: k must be in [1, M = " + std::to_string(M) + "], got " + std::to_string(k));
  const int64_t kmax = *std::max_element(ks.begin(), ks.end());
  const auto truth = val_labels.to(torch::kInt64);
  KnnSelection sel;
  sel.n_fit = M;
  sel.n_val = val_images.size(0);
  bool have = false;
  for (const bool ds : deskews) {
    const KnnJudge judge(fit_images, fit_labels, KnnJudgeOptions().k(kmax).deskew(ds));
    const auto nl = judge.labels().index({judge.neighbours(val_images, kmax)});  // [V,kmax]
    for (const int64_t k : ks) {
      const auto pred = knn_vote(nl, k, judge.num_classes());
      const KnnCandidate c{k, ds, pred.eq(truth).to(torch::kFloat64).mean().item<double>()};
      sel.candidates.push_back(c);
      if (!have || c.val_accuracy > sel.chosen.val_accuracy) sel.chosen = c;
      have = true;
    }
  }
  return sel;
}

}  // namespace ebm
