// Post-hoc OOD detectors (ebm/ood/posthoc.h) against independent oracles:
// Mahalanobis on planted Gaussians with a known covariance, KNN against an
// exhaustive search, ReAct and ViM against their definitions written out
// element by element, ODIN against the closed-form input gradient of a linear
// classifier; and the validation-OOD corruptions (ebm/ood/val_ood.h) against
// the invariants each one must keep.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ebm/core/common.h"
#include "ebm/ood/posthoc.h"
#include "ebm/ood/val_ood.h"

using namespace ebm;

namespace {

// logits = features W^T + b, features = flatten(x) A^T: a classifier whose
// every quantity has a closed form.
class LinearFeatureClassifier : public Energy {
 public:
  LinearFeatureClassifier(torch::Tensor A, torch::Tensor W, torch::Tensor b) : A_(A), W_(W), b_(b) {}
  torch::Tensor features(const torch::Tensor& x) override { return x.flatten(1).matmul(A_.t()); }
  torch::Tensor logits(const torch::Tensor& x) override { return features(x).matmul(W_.t()) + b_; }
  torch::Tensor energy(const torch::Tensor& x) override { return free_energy(logits(x)); }
  std::pair<torch::Tensor, torch::Tensor> linear_head() const override { return {W_, b_}; }
  int64_t num_classes() const override { return W_.size(0); }
  std::string describe() const override { return "linear"; }

 private:
  torch::Tensor A_, W_, b_;
};

}  // namespace

TEST(Mahalanobis, RecoversAKnownCovarianceAndMatchesBruteForce) {
  torch::manual_seed(0);
  const int64_t D = 3, per = 20000;
  // Sigma = L L^T with a fixed lower-triangular L.
  auto L = torch::tensor({{1.0, 0.0, 0.0}, {0.5, 0.8, 0.0}, {-0.3, 0.2, 0.6}}, torch::kFloat64);
  auto sigma = L.matmul(L.t());
  auto mu = torch::tensor({{0.0, 0.0, 0.0}, {4.0, -2.0, 1.0}}, torch::kFloat64);
  std::vector<torch::Tensor> fs, ls;
  for (int64_t k = 0; k < 2; ++k) {
    fs.push_back(torch::randn({per, D}, torch::kFloat64).matmul(L.t()) + mu[k]);
    ls.push_back(torch::full({per}, k, torch::kInt64));
  }
  const auto m = Mahalanobis::fit(torch::cat(fs), torch::cat(ls), 2);
  // The tied covariance estimate converges to Sigma: its precision to Sigma^-1.
  EXPECT_TRUE(torch::allclose(m.precision, torch::inverse(sigma), 0.05, 0.05)) << m.precision << torch::inverse(sigma);
  EXPECT_TRUE(torch::allclose(m.means, mu, 0.0, 0.03)) << m.means;
  // Scores against an element-by-element evaluation with the fitted parameters.
  auto q = torch::randn({7, D}, torch::kFloat64) * 3;
  const auto s = m.score(q);
  for (int64_t i = 0; i < 7; ++i) {
    double best = INFINITY;
    for (int64_t k = 0; k < 2; ++k) {
      double d = 0;
      for (int64_t a = 0; a < D; ++a)
        for (int64_t c = 0; c < D; ++c)
          d += (q[i][a] - m.means[k][a]).item<double>() * m.precision[a][c].item<double>() *
               (q[i][c] - m.means[k][c]).item<double>();
      best = std::min(best, d);
    }
    EXPECT_NEAR(s[i].item<double>(), best, 1e-9 * std::max(1.0, best));
  }
  // A point at a class mean scores 0; the squared distance is chi-square(D) in-distribution (mean D).
  EXPECT_NEAR(m.score(m.means).max().item<double>(), 0.0, 1e-9);
  const auto in = torch::randn({5000, D}, torch::kFloat64).matmul(L.t()) + mu[1];
  EXPECT_NEAR(m.score(in).mean().item<double>(), double(D), 0.15);
}

TEST(Mahalanobis, AClassWithoutImagesIsADataError) {
  auto f = torch::randn({4, 2}, torch::kFloat64);
  auto l = torch::zeros({4}, torch::kInt64);
  EXPECT_THROW(Mahalanobis::fit(f, l, 2), DataError);
}

TEST(Knn, KthNeighbourDistanceMatchesExhaustiveSearch) {
  torch::manual_seed(1);
  auto bank = torch::randn({200, 5}, torch::kFloat64);
  auto q = torch::randn({30, 5}, torch::kFloat64);
  for (int64_t k : {1, 7, 200}) {
    const auto m = Knn::fit(bank, k);
    const auto s = m.score(q);
    for (int64_t i = 0; i < 30; ++i) {
      const auto qi = q[i] / q[i].norm();
      std::vector<double> d;
      for (int64_t j = 0; j < 200; ++j) d.push_back((qi - bank[j] / bank[j].norm()).norm().item<double>());
      std::sort(d.begin(), d.end());
      EXPECT_NEAR(s[i].item<double>(), d[k - 1], 1e-7) << "k=" << k << " query " << i;
    }
  }
  EXPECT_THROW(Knn::fit(bank, 0), UsageError);
  EXPECT_THROW(Knn::fit(bank, 201), UsageError);
}

TEST(React, ClipsAtThePercentileThenTakesTheFreeEnergy) {
  auto f = torch::arange(1, 101, torch::kFloat64).view({10, 10});  // entries 1..100
  auto W = torch::randn({3, 10}, torch::kFloat64);
  auto b = torch::randn({3}, torch::kFloat64);
  const auto m = React::fit(f, W, b, 90);
  EXPECT_NEAR(m.clip, 90.1, 1e-9);  // linear interpolation between the 90th and 91st values
  auto q = torch::rand({4, 10}, torch::kFloat64) * 200;
  const auto s = m.score(q);
  for (int64_t i = 0; i < 4; ++i) {
    std::vector<double> l(3, 0);
    for (int64_t k = 0; k < 3; ++k) {
      l[k] = b[k].item<double>();
      for (int64_t j = 0; j < 10; ++j) l[k] += W[k][j].item<double>() * std::min(q[i][j].item<double>(), m.clip);
    }
    const double mx = *std::max_element(l.begin(), l.end());
    double z = 0;
    for (double v : l) z += std::exp(v - mx);
    EXPECT_NEAR(s[i].item<double>(), -(mx + std::log(z)), 1e-9);
  }
  EXPECT_THROW(React::fit(f, W, b, 0), UsageError);
}

TEST(Vim, ResidualIsTheDistanceToThePrincipalSubspace) {
  torch::manual_seed(2);
  const int64_t D = 6, K = 3;
  auto W = torch::randn({K, D}, torch::kFloat64);
  auto b = torch::randn({K}, torch::kFloat64);
  // Features about the origin o = -pinv(W) b: large variance in 2 planted directions, small elsewhere.
  const auto o = -torch::linalg::pinv(W).matmul(b);
  auto Q = std::get<0>(torch::linalg::qr(torch::randn({D, D}, torch::kFloat64)));
  auto scales = torch::tensor({5.0, 4.0, 0.1, 0.1, 0.1, 0.1}, torch::kFloat64);
  auto f = (torch::randn({4000, D}, torch::kFloat64) * scales).matmul(Q.t()) + o;
  const auto m = Vim::fit(f, W, b, 2);
  EXPECT_TRUE(torch::allclose(m.origin, o, 1e-9, 1e-9));
  // The residual basis is orthonormal and orthogonal to the planted directions.
  EXPECT_TRUE(torch::allclose(m.perp.t().matmul(m.perp), torch::eye(D - 2, torch::kFloat64), 1e-9, 1e-9));
  EXPECT_LT(m.perp.t().matmul(Q.narrow(1, 0, 2)).abs().max().item<double>(), 0.05);
  // Brute force: |(I - V V^T)(f - o)| with V the planted principal directions.
  auto q = torch::randn({5, D}, torch::kFloat64);
  auto V = Q.narrow(1, 0, 2);
  auto P = torch::eye(D, torch::kFloat64) - V.matmul(V.t());
  const auto want = (q - o).matmul(P).norm(2, 1);
  EXPECT_TRUE(torch::allclose(m.residual(q), want, 0.05, 0.05)) << m.residual(q) << want;
  // score = alpha * residual - logsumexp(logits), alpha = mean max-logit / mean residual on the fit data.
  const auto logits = q.matmul(W.t()) + b;
  EXPECT_TRUE(torch::allclose(m.score(q), m.alpha * m.residual(q) - torch::logsumexp(logits, 1), 1e-12, 1e-12));
  const double alpha = std::get<0>((f.matmul(W.t()) + b).max(1)).mean().item<double>() / m.residual(f).mean().item<double>();
  EXPECT_NEAR(m.alpha, alpha, 1e-9 * std::abs(alpha));
  EXPECT_THROW(Vim::fit(f, W, b, D), UsageError);
}

TEST(Odin, MatchesTheClosedFormGradientOfALinearClassifier) {
  torch::manual_seed(3);
  const int64_t D = 4, K = 3;
  auto A = torch::randn({D, 4}, torch::kFloat32);  // x is [N,1,2,2]
  auto W = torch::randn({K, D}, torch::kFloat32);
  auto b = torch::randn({K}, torch::kFloat32);
  LinearFeatureClassifier e(A, W, b);
  auto x = torch::rand({6, 1, 2, 2});
  const double T = 10, eps = 0.01;
  // eps = 0: -max softmax(logits / T).
  const auto s0 = odin_score(e, x, T, 0.0, 4);
  const auto L = e.logits(x).to(torch::kFloat64) / T;
  EXPECT_TRUE(torch::allclose(s0, -std::get<0>(torch::softmax(L, 1).max(1)), 1e-6, 1e-6));
  // eps > 0: grad_x of -log p_y(x;T) = -(M_y - sum_k p_k M_k) / T with M = W A (logits = M x + b).
  const auto M = W.matmul(A).to(torch::kFloat64);  // [K,4]
  const auto p = torch::softmax(L, 1);
  const auto y = L.argmax(1);
  const auto grad = -(M.index_select(0, y) - p.matmul(M)) / T;  // [N,4]
  const auto xp = x.flatten(1).to(torch::kFloat64) - eps * grad.sign();
  const auto Lp = (xp.matmul(M.t()) + b.to(torch::kFloat64)) / T;
  const auto want = -std::get<0>(torch::softmax(Lp, 1).max(1));
  EXPECT_TRUE(torch::allclose(odin_score(e, x, T, eps, 4), want, 1e-5, 1e-5));
  EXPECT_THROW(odin_score(e, x, 0.0, 0.0), UsageError);
}

TEST(Posthoc, FeaturesAndLogitsOfALinearClassifier) {
  auto A = torch::randn({3, 4}), W = torch::randn({2, 3}), b = torch::randn({2});
  LinearFeatureClassifier e(A, W, b);
  auto x = torch::rand({5, 1, 2, 2});
  const auto fs = extract_features(e, x, 2);
  EXPECT_EQ(fs.features.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_TRUE(torch::allclose(fs.logits, e.logits(x).to(torch::kFloat64), 1e-5, 1e-5));
  GaussianEnergy g(torch::zeros({1, 2, 2}), 1.0);
  EXPECT_THROW(extract_features(g, x), UsageError);
}

TEST(ValOod, CorruptionsKeepTheirInvariants) {
  torch::manual_seed(4);
  auto x = torch::rand({8, 1, 28, 28});
  // pixel-shuffle: the same multiset of pixels per image, in another order.
  const auto ps = corrupt("pixel-shuffle", x, 7);
  EXPECT_TRUE(torch::equal(std::get<0>(ps.flatten(1).sort(1)), std::get<0>(x.flatten(1).sort(1))));
  EXPECT_FALSE(torch::equal(ps, x));
  EXPECT_TRUE(torch::equal(ps, corrupt("pixel-shuffle", x, 7)));  // seeded
  // patch-shuffle: every 7x7 patch of the output is one of the input's, each used once.
  const auto pt = corrupt("patch-shuffle", x, 7);
  for (int64_t n = 0; n < 8; ++n) {
    std::vector<bool> used(16, false);
    for (int64_t i = 0; i < 16; ++i) {
      const auto out = pt[n][0].narrow(0, (i / 4) * 7, 7).narrow(1, (i % 4) * 7, 7);
      int64_t found = -1;
      for (int64_t j = 0; j < 16 && found < 0; ++j)
        if (!used[j] && torch::equal(out, x[n][0].narrow(0, (j / 4) * 7, 7).narrow(1, (j % 4) * 7, 7))) found = j;
      ASSERT_GE(found, 0) << "image " << n << " patch " << i;
      used[found] = true;
    }
  }
  // blur: a constant image stays constant (reflect padding); the mean is nearly kept.
  auto c = torch::full({2, 1, 28, 28}, 0.3);
  EXPECT_TRUE(torch::allclose(corrupt("blur", c, 0), c, 1e-5, 1e-5));
  EXPECT_NEAR(corrupt("blur", x, 0).mean().item<double>(), x.mean().item<double>(), 0.01);
  // mixup: the mean of each image and one other image of the batch.
  const auto mx = corrupt("mixup", x, 3);
  for (int64_t n = 0; n < 8; ++n) {
    const auto other = mx[n] * 2 - x[n];
    bool match = false;
    for (int64_t j = 0; j < 8; ++j) match |= (j != n) && torch::allclose(other, x[j], 1e-5, 1e-5);
    EXPECT_TRUE(match) << "image " << n;
  }
  EXPECT_THROW(corrupt("rotate", x, 0), UsageError);
}
