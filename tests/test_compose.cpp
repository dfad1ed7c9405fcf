// test_compose.cpp: the energy algebra (AND/NOT as weighted sums, OR as a
// soft minimum, affine calibration, class-conditional energies) - values by
// hand and gradients against central finite differences in float64.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ebm/core/common.h"
#include "ebm/core/compose.h"
#include "ebm/core/energy.h"

namespace {

constexpr auto kDouble = torch::kFloat64;

// A smooth non-quadratic energy: E(x) = sum_j a_j sin(3 x_j) + 0.5 x_j^3.
class WavyEnergy : public ebm::Energy {
 public:
  explicit WavyEnergy(torch::Tensor a) : a_(std::move(a)) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    return (a_ * torch::sin(3 * x) + 0.5 * x.pow(3)).flatten(1).sum(1);
  }
  std::string describe() const override { return "wavy"; }

 private:
  torch::Tensor a_;
};

// A tiny analytic classifier: logits_k = sum_j W_kj tanh(2 x_j - 1) + b_k,
// energy = free energy -T logsumexp(logits/T).
class ToyClassifier : public ebm::Energy {
 public:
  ToyClassifier(torch::Tensor w, torch::Tensor b, double t = 1.0) : w_(std::move(w)), b_(std::move(b)), t_(t) {}
  torch::Tensor logits(const torch::Tensor& x) override {
    return torch::tanh(2 * x.flatten(1) - 1).matmul(w_.t()) + b_;
  }
  torch::Tensor energy(const torch::Tensor& x) override { return ebm::free_energy(logits(x), t_); }
  int64_t num_classes() const override { return w_.size(0); }
  std::string describe() const override { return "toy-classifier"; }

 private:
  torch::Tensor w_, b_;
  double t_;
};

struct Zoo {
  // Images are [2,1,3,3] float64.
  std::shared_ptr<ebm::GaussianEnergy> g1, g2;
  std::shared_ptr<WavyEnergy> wavy;
  std::shared_ptr<ToyClassifier> clf;
  torch::Tensor x;
  Zoo() {
    auto gen = at::detail::createCPUGenerator(123);
    g1 = std::make_shared<ebm::GaussianEnergy>(torch::rand({1, 3, 3}, gen, kDouble), 0.4);
    g2 = std::make_shared<ebm::GaussianEnergy>(torch::rand({1, 3, 3}, gen, kDouble), 0.7);
    wavy = std::make_shared<WavyEnergy>(torch::randn({1, 3, 3}, gen, kDouble));
    clf = std::make_shared<ToyClassifier>(torch::randn({4, 9}, gen, kDouble), torch::randn({4}, gen, kDouble));
    x = torch::rand({2, 1, 3, 3}, gen, kDouble);
  }
};

// Central finite differences of sum_b E(x)_b (each E_b depends on x_b only):
// [B,C,H,W] float64. h = 1e-6: truncation ~h^2 |E'''| ~ 1e-12, rounding
// ~eps |E| / h ~ 1e-10 |E|.
torch::Tensor fd_grad(ebm::Energy& e, const torch::Tensor& x, double h = 1e-6) {
  torch::NoGradGuard ng;
  auto g = torch::zeros_like(x);
  auto xf = x.clone();
  auto flat = xf.view(-1);
  auto gf = g.view(-1);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double v = flat[i].item<double>();
    flat[i] = v + h;
    const double up = e.energy(xf).sum().item<double>();
    flat[i] = v - h;
    const double dn = e.energy(xf).sum().item<double>();
    flat[i] = v;
    gf[i] = (up - dn) / (2 * h);
  }
  return g;
}

// Gradient tolerance: max |g_autograd - g_fd| <= 1e-6 * (1 + max |g|). The
// error budget above is < 1e-8 for the O(1..100) energies here, so this has
// two orders of margin and still catches any wrong term (errors O(|g|)).
void expect_grad_matches_fd(ebm::Energy& e, const torch::Tensor& x, const std::string& what) {
  SCOPED_TRACE(what + " = " + e.describe());
  torch::Tensor en;
  auto g = ebm::energy_grad(e, x, &en);
  ASSERT_EQ(g.scalar_type(), kDouble);
  ASSERT_EQ(g.sizes(), x.sizes());
  ASSERT_EQ(en.sizes(), (std::vector<int64_t>{x.size(0)}));
  auto fd = fd_grad(e, x);
  const double scale = 1.0 + g.abs().max().item<double>();
  const double err = (g - fd).abs().max().item<double>();
  EXPECT_LE(err, 1e-6 * scale) << "max|g| " << scale - 1;
  EXPECT_GT(g.abs().max().item<double>(), 1e-3) << "degenerate gradient";
}

// -log(sum_i exp(-s e_i))/s for one row, in long double by hand.
double soft_min(const std::vector<double>& es, double s) {
  const double m = *std::min_element(es.begin(), es.end());
  long double acc = 0;
  for (double e : es) acc += std::exp(static_cast<long double>(-s * (e - m)));
  return m - static_cast<double>(std::log(acc)) / s;
}

}  // namespace

// ---------------------------------------------------------------- values

static void Compose_SumAndNotValues() {
  Zoo z;
  ebm::SumEnergy sum({{1.5, z.g1}, {-0.7, z.wavy}, {2.0, z.clf}});
  auto want = 1.5 * z.g1->energy(z.x) - 0.7 * z.wavy->energy(z.x) + 2.0 * z.clf->energy(z.x);
  EXPECT_TRUE(torch::allclose(sum.energy(z.x), want, 1e-12, 1e-12));
  auto a = ebm::make_and({z.g1, z.g2});
  EXPECT_TRUE(torch::allclose(a->energy(z.x), z.g1->energy(z.x) + z.g2->energy(z.x), 1e-12, 1e-12));
  auto n = ebm::make_not(z.g1, z.g2, 0.25);
  EXPECT_TRUE(torch::allclose(n->energy(z.x), z.g1->energy(z.x) - 0.25 * z.g2->energy(z.x), 1e-12, 1e-12));
  EXPECT_FALSE(sum.describe().empty());
}

static void Compose_OrValueByHandAndLimit() {
  Zoo z;
  std::vector<ebm::EnergyPtr> terms{z.g1, z.g2, z.wavy};
  std::vector<torch::Tensor> es;
  for (auto& t : terms) es.push_back(t->energy(z.x));
  for (double s : {0.1, 0.5, 1.0, 7.0}) {
    SCOPED_TRACE("s = " + std::to_string(s));
    auto got = ebm::make_or(terms, s)->energy(z.x);
    for (int64_t b = 0; b < z.x.size(0); ++b) {
      std::vector<double> row;
      for (auto& e : es) row.push_back(e[b].item<double>());
      EXPECT_NEAR(got[b].item<double>(), soft_min(row, s), 1e-10 * (1 + std::abs(soft_min(row, s))));
    }
  }
  // min - log(n)/s <= OR <= min, so OR -> min as s grows.
  auto mn = torch::stack(es, 1).amin(1);
  double prev_gap = std::numeric_limits<double>::infinity();
  for (double s : {1.0, 10.0, 100.0, 1e4}) {
    auto got = ebm::make_or(terms, s)->energy(z.x);
    EXPECT_TRUE((got <= mn + 1e-12).all().item<bool>()) << "s = " << s;
    EXPECT_TRUE((got >= mn - std::log(3.0) / s - 1e-12).all().item<bool>()) << "s = " << s;
    const double gap = (mn - got).max().item<double>();
    EXPECT_LE(gap, prev_gap);
    prev_gap = gap;
  }
  EXPECT_LT(prev_gap, 1.2e-4);
  // A single-term OR is the term itself.
  EXPECT_TRUE(torch::allclose(ebm::make_or({z.g1}, 3.0)->energy(z.x), es[0], 1e-12, 1e-12));
}

static void Compose_FreeEnergyValue() {
  auto gen = at::detail::createCPUGenerator(7);
  auto logits = torch::randn({5, 4}, gen, kDouble) * 3;
  for (double t : {0.5, 1.0, 3.0}) {
    auto got = ebm::free_energy(logits, t);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{5}));
    for (int64_t b = 0; b < 5; ++b) {
      long double acc = 0;
      for (int64_t k = 0; k < 4; ++k) acc += std::exp(static_cast<long double>(logits[b][k].item<double>() / t));
      const double want = -t * static_cast<double>(std::log(acc));
      EXPECT_NEAR(got[b].item<double>(), want, 1e-12 * (1 + std::abs(want))) << "T " << t << " row " << b;
    }
  }
  // Low temperature: -max logit.
  EXPECT_TRUE(torch::allclose(ebm::free_energy(logits, 1e-4), -std::get<0>(logits.max(1)), 0, 1e-3));
  // float32 path, large logits do not overflow.
  auto big = torch::tensor({{1000.0f, 1000.0f}});
  EXPECT_NEAR(ebm::free_energy(big).item<double>(), -(1000.0 + std::log(2.0)), 1e-3);
}

static void Compose_AffineAndClassValues() {
  Zoo z;
  ebm::AffineEnergy aff(z.wavy, 3.0, 2.5);
  EXPECT_TRUE(torch::allclose(aff.energy(z.x), (z.wavy->energy(z.x) - 3.0) / 2.5, 1e-12, 1e-12));
  for (int64_t c = 0; c < 4; ++c) {
    ebm::ClassEnergy ce(z.clf, c);
    EXPECT_TRUE(torch::allclose(ce.energy(z.x), -z.clf->logits(z.x).select(1, c), 1e-12, 1e-12));
  }
  // OR over all classes at s = 1 is the classifier's free energy (JEM: E(x) = -logsumexp f(x)).
  std::vector<ebm::EnergyPtr> cls;
  for (int64_t c = 0; c < 4; ++c) cls.push_back(std::make_shared<ebm::ClassEnergy>(z.clf, c));
  EXPECT_TRUE(torch::allclose(ebm::make_or(cls, 1.0)->energy(z.x), z.clf->energy(z.x), 1e-12, 1e-12));
}

static void Compose_BadArgumentsThrow() {
  Zoo z;
  EXPECT_THROW(ebm::OrEnergy({z.g1}, 0.0), ebm::UsageError);
  EXPECT_THROW(ebm::OrEnergy({z.g1}, -1.0), ebm::UsageError);
  EXPECT_THROW(ebm::OrEnergy({z.g1}, std::nan("")), ebm::UsageError);
  EXPECT_THROW(ebm::AffineEnergy(z.g1, 0.0, 0.0), ebm::UsageError);
  EXPECT_THROW(ebm::ClassEnergy(z.clf, 4), ebm::UsageError);
  EXPECT_THROW(ebm::ClassEnergy(z.clf, -1), ebm::UsageError);
  EXPECT_THROW(ebm::ClassEnergy(z.g1, 0), ebm::UsageError);  // not a classifier
}

// ---------------------------------------------------------------- gradients

static void ComposeGrad_Leaves() {
  Zoo z;
  expect_grad_matches_fd(*z.g1, z.x, "gaussian");
  expect_grad_matches_fd(*z.wavy, z.x, "wavy");
  expect_grad_matches_fd(*z.clf, z.x, "free energy");
  ToyClassifier hot(torch::randn({4, 9}, kDouble), torch::zeros({4}, kDouble), 0.3);
  expect_grad_matches_fd(hot, z.x, "free energy T=0.3");
}

static void ComposeGrad_SumWithNegativeWeights() {
  Zoo z;
  ebm::SumEnergy sum({{1.5, z.g1}, {-0.7, z.wavy}, {2.0, z.clf}, {-0.001, z.g2}});
  expect_grad_matches_fd(sum, z.x, "sum");
  expect_grad_matches_fd(*ebm::make_not(z.g1, z.wavy, 0.5), z.x, "not");
  expect_grad_matches_fd(*ebm::make_and({z.g1, z.g2, z.wavy}), z.x, "and");
}

static void ComposeGrad_OrAtSeveralTemperatures() {
  Zoo z;
  for (double s : {0.3, 1.0, 10.0}) expect_grad_matches_fd(*ebm::make_or({z.g1, z.g2, z.wavy}, s), z.x, "or s=" + std::to_string(s));
}

static void ComposeGrad_AffineAndClass() {
  Zoo z;
  ebm::AffineEnergy aff(std::make_shared<ebm::SumEnergy>(std::vector<ebm::SumEnergy::Term>{{1.0, z.g1}, {-0.5, z.wavy}}),
                        -2.0, 0.3);
  expect_grad_matches_fd(aff, z.x, "affine");
  for (int64_t c : {0, 3}) {
    ebm::ClassEnergy ce(z.clf, c);
    expect_grad_matches_fd(ce, z.x, "class " + std::to_string(c));
  }
}

TEST(ComposeGrad, NestedOrOfAnds) {
  Zoo z;
  auto c0 = std::make_shared<ebm::ClassEnergy>(z.clf, 0);
  auto c1 = std::make_shared<ebm::ClassEnergy>(z.clf, 1);
  auto c2 = std::make_shared<ebm::ClassEnergy>(z.clf, 2);
  // (c0 & g1) | (c1 & !g2) | (c2 & wavy), calibrated.
  auto expr = std::make_shared<ebm::AffineEnergy>(
      ebm::make_or({ebm::make_and({c0, z.g1}), ebm::make_not(c1, z.g2, 0.3), ebm::make_and({c2, z.wavy})}, 2.0),
      1.0, 4.0);
  expect_grad_matches_fd(*expr, z.x, "nested");
  // The nested value, assembled by hand.
  auto a = c0->energy(z.x) + z.g1->energy(z.x);
  auto b = c1->energy(z.x) - 0.3 * z.g2->energy(z.x);
  auto c = c2->energy(z.x) + z.wavy->energy(z.x);
  auto want = (-torch::logsumexp(torch::stack({a, b, c}, 1) * -2.0, 1) / 2.0 - 1.0) / 4.0;
  EXPECT_TRUE(torch::allclose(expr->energy(z.x), want, 1e-12, 1e-12));
}

// ---------------------------------------------------------------- test cases
// Each ctest entry is its own process and LibTorch takes ~0.7 s to load, so
// related checks share one TEST; SCOPED_TRACE names the check that failed.

TEST(Compose, Values) {
  {
    SCOPED_TRACE("SumAndNotValues");
    Compose_SumAndNotValues();
  }
  {
    SCOPED_TRACE("OrValueByHandAndLimit");
    Compose_OrValueByHandAndLimit();
  }
  {
    SCOPED_TRACE("FreeEnergyValue");
    Compose_FreeEnergyValue();
  }
  {
    SCOPED_TRACE("AffineAndClassValues");
    Compose_AffineAndClassValues();
  }
  {
    SCOPED_TRACE("BadArgumentsThrow");
    Compose_BadArgumentsThrow();
  }
}

TEST(ComposeGrad, LeavesAndSums) {
  {
    SCOPED_TRACE("Leaves");
    ComposeGrad_Leaves();
  }
  {
    SCOPED_TRACE("SumWithNegativeWeights");
    ComposeGrad_SumWithNegativeWeights();
  }
}

TEST(ComposeGrad, OrAffineClass) {
  {
    SCOPED_TRACE("OrAtSeveralTemperatures");
    ComposeGrad_OrAtSeveralTemperatures();
  }
  {
    SCOPED_TRACE("AffineAndClass");
    ComposeGrad_AffineAndClass();
  }
}

// energy_grad must work when the caller holds a NoGradGuard (attack and
// evaluation loops do): grad of ||x-mu||^2/(2 s^2) is (x-mu)/s^2.
TEST(EnergyGrad, WorksUnderNoGradGuard) {
  const auto mu = torch::full({1, 3, 3}, 0.25, torch::kFloat64);
  ebm::GaussianEnergy g(mu, 0.5);
  const auto x = torch::rand({4, 1, 3, 3}, torch::kFloat64);
  torch::NoGradGuard ng;
  const auto grad = ebm::energy_grad(g, x);
  EXPECT_TRUE(torch::allclose(grad, (x - mu) / 0.25, 1e-9, 1e-12));
  EXPECT_FALSE(torch::GradMode::is_enabled());  // the guard is restored on return
}
