// Fréchet distance (ebm/metrics/frechet.h) against closed forms on Gaussians:
// identical stats, diagonal covariances, a full-rank pair against an
// independent matrix square root (Denman–Beavers on the non-symmetric C_a C_b),
// samples of known Gaussians, symmetry; plus judge_features and input checks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "ebm/core/common.h"
#include "ebm/core/models.h"
#include "ebm/metrics/frechet.h"
#include "test_util.h"

using namespace ebm;

namespace {
using ebm::test::kF64;


// A random SPD matrix [D,D] with eigenvalues in [lo, hi] (a random rotation of them).
torch::Tensor random_spd(int64_t d, double lo, double hi) {
  auto [q, r] = torch::linalg_qr(torch::randn({d, d}, kF64));
  const auto w = torch::linspace(lo, hi, d, kF64);
  return (q * w.unsqueeze(0)).mm(q.t());
}

GaussianStats stats(torch::Tensor mean, torch::Tensor cov) {
  GaussianStats s;
  s.mean = std::move(mean);
  s.cov = std::move(cov);
  s.n = 0;
  return s;
}

// tr( (A)^{1/2} ) of a non-symmetric A with positive real eigenvalues, by the
// Denman–Beavers iteration Y <- (Y + Z^{-1}) / 2, Z <- (Z + Y^{-1}) / 2
// (Y -> A^{1/2}, Z -> A^{-1/2}): no eigendecomposition, no symmetric form.
double trace_sqrt_denman_beavers(const torch::Tensor& a) {
  auto y = a.clone();
  auto z = torch::eye(a.size(0), kF64);
  for (int it = 0; it < 100; ++it) {
    const auto yi = torch::inverse(y), zi = torch::inverse(z);
    const auto y_next = 0.5 * (y + zi);
    z = 0.5 * (z + yi);
    const double change = (y_next - y).abs().max().item<double>();
    y = y_next;
    if (change < 1e-15 * y.abs().max().item<double>()) break;
  }
  // The iterate really is a square root of A.
  EXPECT_LT((y.mm(y) - a).abs().max().item<double>(), 1e-10 * a.abs().max().item<double>());
  return y.trace().item<double>();
}

}  // namespace

TEST(Frechet, IdenticalStatsGiveZero) {
  torch::manual_seed(1);
  for (int64_t d : {1, 4, 16}) {
    const auto s = stats(torch::randn({d}, kF64), random_spd(d, 0.1, 3.0));
    EXPECT_NEAR(frechet_distance(s, s), 0.0, 1e-9) << "D = " << d;
  }
}

TEST(Frechet, DiagonalCovariancesClosedForm) {
  torch::manual_seed(2);
  const int64_t d = 10;
  const auto ma = torch::randn({d}, kF64), mb = torch::randn({d}, kF64);
  const auto va = torch::rand({d}, kF64) * 4 + 0.01, vb = torch::rand({d}, kF64) * 4 + 0.01;
  const double expected =
      (ma - mb).pow(2).sum().item<double>() + (va.sqrt() - vb.sqrt()).pow(2).sum().item<double>();
  const double fd = frechet_distance(stats(ma, torch::diag(va)), stats(mb, torch::diag(vb)));
  EXPECT_NEAR(fd, expected, 1e-9);
  EXPECT_GT(expected, 1.0);  // the case is not trivially near 0
  // One dimension: (m_a - m_b)^2 + (s_a - s_b)^2 by hand.
  EXPECT_NEAR(frechet_distance(stats(torch::tensor({1.0}, kF64), torch::tensor({{4.0}}, kF64)),
                               stats(torch::tensor({-2.0}, kF64), torch::tensor({{9.0}}, kF64))),
              9.0 + 1.0, 1e-12);
}

TEST(Frechet, FullRankPairAgainstDenmanBeavers) {
  torch::manual_seed(3);
  for (int64_t d : {3, 8}) {
    const auto ca = random_spd(d, 0.2, 5.0), cb = random_spd(d, 0.05, 2.0);
    const auto ma = torch::randn({d}, kF64), mb = torch::randn({d}, kF64);
    const double expected = (ma - mb).pow(2).sum().item<double>() + ca.trace().item<double>() +
                            cb.trace().item<double>() - 2.0 * trace_sqrt_denman_beavers(ca.mm(cb));
    const double fd = frechet_distance(stats(ma, ca), stats(mb, cb));
    EXPECT_NEAR(fd, expected, 1e-8 * std::abs(expected)) << "D = " << d;
    EXPECT_GT(expected, 0.1);
  }
}

TEST(Frechet, Symmetric) {
  torch::manual_seed(4);
  const int64_t d = 12;
  const auto a = stats(torch::randn({d}, kF64), random_spd(d, 0.01, 10.0));
  const auto b = stats(torch::randn({d}, kF64) + 1, random_spd(d, 0.5, 1.0));
  const double ab = frechet_distance(a, b), ba = frechet_distance(b, a);
  EXPECT_GT(ab, 1.0);
  EXPECT_NEAR(ab, ba, 1e-9 * ab);
}

TEST(Frechet, SamplesOfKnownGaussiansApproachClosedForm) {
  torch::manual_seed(5);
  const int64_t d = 4, n = 20000;
  const auto ma = torch::tensor({0.0, 1.0, -1.0, 0.5}, kF64), mb = torch::tensor({1.0, 0.0, -1.0, 2.0}, kF64);
  const auto ca = random_spd(d, 0.5, 3.0), cb = random_spd(d, 0.2, 1.5);
  const double exact = frechet_distance(stats(ma, ca), stats(mb, cb));
  // x = mu + z L^T with L L^T = C.
  const auto xa = ma + torch::randn({n, d}, kF64).mm(torch::linalg_cholesky(ca).t());
  const auto xb = mb + torch::randn({n, d}, kF64).mm(torch::linalg_cholesky(cb).t());
  const auto sa = gaussian_stats(xa), sb = gaussian_stats(xb.to(torch::kFloat32));  // any float dtype
  EXPECT_EQ(sa.n, n);
  EXPECT_EQ(sb.mean.scalar_type(), torch::kFloat64);
  EXPECT_LT((sa.cov - ca).abs().max().item<double>(), 0.1);
  const double fd = frechet_distance(sa, sb);
  EXPECT_GT(exact, 3.0);
  EXPECT_NEAR(fd, exact, 0.03 * exact);
  // Two samples of the same Gaussian: small against the distance between the two.
  const auto xa2 = ma + torch::randn({n, d}, kF64).mm(torch::linalg_cholesky(ca).t());
  EXPECT_LT(frechet_distance(sa, gaussian_stats(xa2)), 0.01 * exact);
}

TEST(Frechet, UnbiasedCovarianceByHand) {
  const auto s = gaussian_stats(torch::tensor({{0.0, 1.0}, {2.0, 1.0}, {4.0, 4.0}}, kF64));
  EXPECT_EQ(s.n, 3);
  EXPECT_TRUE(torch::allclose(s.mean, torch::tensor({2.0, 2.0}, kF64)));
  // Centred: (-2,-1), (0,-1), (2,2): sums of products 8, 6, 6, divided by n - 1 = 2.
  EXPECT_TRUE(torch::allclose(s.cov, torch::tensor({{4.0, 3.0}, {3.0, 3.0}}, kF64))) << s.cov;
}

TEST(Frechet, RankDeficientCovariancesStayFinite) {
  // D = 6 features from 4 points: rank-3 covariances, eigenvalues ~0 that rounding makes slightly negative.
  torch::manual_seed(6);
  const auto a = gaussian_stats(torch::randn({4, 6}, kF64)), b = gaussian_stats(torch::randn({4, 6}, kF64));
  const double self = frechet_distance(a, a), ab = frechet_distance(a, b);
  EXPECT_TRUE(std::isfinite(self) && std::isfinite(ab));
  EXPECT_NEAR(self, 0.0, 1e-6);
  EXPECT_GT(ab, 0.0);
}

TEST(Frechet, InputChecksNameTheBadValue) {
  try {
    gaussian_stats(torch::zeros({1, 5}));
    FAIL() << "N = 1 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("N = 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gaussian_stats(torch::zeros({10})), UsageError);
  auto bad = torch::zeros({3, 2});
  bad[2][1] = std::nan("");
  try {
    gaussian_stats(bad);
    FAIL() << "NaN accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("#2"), std::string::npos) << e.what();
  }
  const auto a = gaussian_stats(torch::randn({5, 3})), b = gaussian_stats(torch::randn({5, 4}));
  try {
    frechet_distance(a, b);
    FAIL() << "dimension mismatch accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("3 vs 4"), std::string::npos) << e.what();
  }
}

TEST(FrechetJudgeFeatures, PenultimateFeaturesBatched) {
  torch::manual_seed(7);
  NativeModel clf(json{{"type", "conv-classifier"}, {"width", 4}, {"num_classes", 10}});
  clf.set_training(false);
  const auto x = torch::rand({7, 1, 28, 28});
  const auto f = judge_features(clf, x, /*batch=*/3);
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{7, 16}));
  EXPECT_EQ(f.scalar_type(), torch::kFloat64);
  EXPECT_FALSE(f.requires_grad());
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(f, clf.features(x).to(torch::kFloat64), 1e-6, 1e-6));
  // The features are the ones the linear head maps to the logits.
  const auto [w, bias] = clf.linear_head();
  EXPECT_TRUE(torch::allclose(f.mm(w.to(torch::kFloat64).t()) + bias.to(torch::kFloat64),
                              clf.logits(x).to(torch::kFloat64), 1e-4, 1e-4));
}

TEST(FrechetJudgeFeatures, EnergyWithoutFeaturesIsAUsageError) {
  NativeModel ebm_model(json{{"type", "conv-ebm"}, {"width", 4}});
  try {
    judge_features(ebm_model, torch::rand({2, 1, 28, 28}));
    FAIL() << "conv-ebm accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(ebm_model.describe()), std::string::npos) << e.what();
  }
  EXPECT_THROW(judge_features(ebm_model, torch::rand({2, 28, 28})), UsageError);
}
