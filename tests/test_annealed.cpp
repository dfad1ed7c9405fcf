// Annealed Langevin (core/annealed.h) against analytic oracles on Gaussians.
//
// ULA on a Gaussian is a linear recursion, so the mean and variance of the
// chains after every level and step follow exactly from
//   m' = mu + (1 - a/v)(m - mu),   var' = (1 - a/v)^2 var + 2a,   v = s^2 + sigma^2,
// and the final Tweedie step maps them through x -> mu + (1 - sigma^2/v)(x - mu).
// MALA's acceptance at stationarity on N(mu, v I) in d dimensions is
// E[min(1, exp(a/(4 v^2) * sum_i (x_i^2 - y_i^2)))] over x ~ N(0, v I),
// y = (1 - a/v) x + sqrt(2a) xi (centred), derived by hand and integrated here by
// Monte Carlo from those two Gaussians, not by running a chain.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "ebm/core/annealed.h"
#include "ebm/core/common.h"
#include "ebm/core/compose.h"
#include "ebm/core/tweedie.h"

namespace ebm {
namespace {

constexpr double kMu = 0.3, kS = 0.1;

TEST(Annealed, UlaFollowsTheExactGaussianRecursion) {
  GaussianNoiseConditional e(torch::full({1, 8, 8}, kMu), kS);
  const int64_t n = 2000, d = 64;
  auto gen = at::detail::createCPUGenerator(11);
  const double m0 = 0.5, var0 = 1.0;
  auto x0 = m0 + std::sqrt(var0) * torch::randn({n, 1, 8, 8}, gen);
  for (bool tweedie : {false, true}) {
    SCOPED_TRACE(tweedie ? "with the Tweedie step" : "without");
    auto o = AnnealedOptions().sigma_max(1.0).sigma_min(0.02).levels(8).steps_per_level(60).epsilon(1e-4)
                 .corrector("ula").tweedie_end(tweedie).seed(5);
    const auto r = annealed_langevin(e, x0, o);
    // The oracle: the recursion, level by level, step by step.
    double m = m0, var = var0;
    for (int64_t i = 0; i < o.levels(); ++i) {
      const double sigma = annealed_sigma(o, i), v = kS * kS + sigma * sigma;
      const double a = o.epsilon() * sigma * sigma / (o.sigma_min() * o.sigma_min());
      for (int64_t k = 0; k < o.steps_per_level(); ++k) {
        m = kMu + (1 - a / v) * (m - kMu);
        var = (1 - a / v) * (1 - a / v) * var + 2 * a;
      }
    }
    if (tweedie) {
      const double v = kS * kS + o.sigma_min() * o.sigma_min(), f = 1 - o.sigma_min() * o.sigma_min() / v;
      m = kMu + f * (m - kMu);
      var = f * f * var;
    }
    const auto xs = r.x.to(torch::kFloat64);
    const double got_m = xs.mean().item<double>(), got_var = xs.var().item<double>();
    const double se_m = std::sqrt(var / double(n * d));
    EXPECT_NEAR(got_m, m, 5 * se_m + 1e-6) << "mean";
    EXPECT_NEAR(got_var / var, 1.0, 5 * std::sqrt(2.0 / double(n * d))) << "variance " << got_var << " vs " << var;
    // And the chain did anneal to the data: variance near s^2 (+ sigma_min^2 without Tweedie), not var0.
    EXPECT_NEAR(got_var, kS * kS + (tweedie ? 0.0 : o.sigma_min() * o.sigma_min()), 0.1 * kS * kS);
    ASSERT_EQ(r.sigmas.size(), size_t(8));
    EXPECT_DOUBLE_EQ(r.sigmas.front(), 1.0);
    EXPECT_NEAR(r.sigmas.back(), 0.02, 1e-15);
    EXPECT_EQ(r.acceptance_rate, 1.0);
    EXPECT_EQ(r.energy_evaluations, 8 * 60 + (tweedie ? 1 : 0));
  }
}

// Expected MALA acceptance at stationarity for N(mu, v I), d dims, step a.
double mala_acceptance_oracle(double v, double a, int64_t d) {
  auto gen = at::detail::createCPUGenerator(99);
  const auto opt = torch::TensorOptions().dtype(torch::kFloat64);
  const auto x = std::sqrt(v) * torch::randn({400000, d}, gen, opt);
  const auto y = (1 - a / v) * x + std::sqrt(2 * a) * torch::randn({400000, d}, gen, opt);
  const auto log_a = a / (4 * v * v) * (x * x - y * y).sum(1);
  return log_a.exp().clamp_max(1.0).mean().item<double>();
}

TEST(Annealed, MalaAcceptanceMatchesItsClosedForm) {
  GaussianNoiseConditional e(torch::full({1, 8, 8}, kMu), kS);
  const double sigma = 0.05, v = kS * kS + sigma * sigma;
  const int64_t n = 2000;
  for (double ratio : {0.2, 0.4}) {
    SCOPED_TRACE(ratio);
    const double a = ratio * v;
    // One level at sigma, started in its stationary distribution N(mu, v I).
    auto gen = at::detail::createCPUGenerator(3);
    auto x0 = kMu + std::sqrt(v) * torch::randn({n, 1, 8, 8}, gen);
    auto o = AnnealedOptions().sigma_max(1.0).sigma_min(sigma).levels(1).steps_per_level(20).epsilon(a)
                 .corrector("mala").tweedie_end(false).seed(8);
    const auto r = annealed_langevin(e, x0, o);
    const double want = mala_acceptance_oracle(v, a, 64);
    EXPECT_GT(want, 0.3);  // a meaningful test: neither almost always nor almost never
    EXPECT_LT(want, 0.9);
    // 40,000 proposals: binomial standard error <= 0.0025.
    EXPECT_NEAR(r.acceptance_rate, want, 0.015) << "closed form " << want;
    // MALA leaves the target invariant: the chains are still N(mu, v I).
    const auto xs = r.x.to(torch::kFloat64);
    EXPECT_NEAR(xs.mean().item<double>(), kMu, 5 * std::sqrt(v / double(n * 64)));
    EXPECT_NEAR(xs.var().item<double>() / v, 1.0, 5 * std::sqrt(2.0 / double(n * 64)) + 0.01);
  }
}

TEST(Annealed, MalaCorrectsWhatUlaGetsWrong) {
  // With a step as large as the variance, ULA's stationary variance is
  // v / (1 - a/(2v)) = 2v, twice the target; MALA keeps v exactly.
  GaussianNoiseConditional e(torch::full({1, 8, 8}, kMu), kS);
  const double sigma = 0.05, v = kS * kS + sigma * sigma, a = v;
  auto gen = at::detail::createCPUGenerator(4);
  auto x0 = kMu + std::sqrt(v) * torch::randn({1000, 1, 8, 8}, gen);
  auto o = AnnealedOptions().sigma_max(1.0).sigma_min(sigma).levels(1).steps_per_level(200).epsilon(a)
               .tweedie_end(false).seed(9);
  const double ula = annealed_langevin(e, x0, AnnealedOptions(o).corrector("ula")).x.to(torch::kFloat64).var().item<double>();
  const auto mr = annealed_langevin(e, x0, AnnealedOptions(o).corrector("mala"));
  const double mala = mr.x.to(torch::kFloat64).var().item<double>();
  EXPECT_NEAR(ula / v, 2.0, 0.1);
  EXPECT_NEAR(mala / v, 1.0, 0.1);
  EXPECT_GT(mr.acceptance_rate, 0.0);
  EXPECT_LT(mr.acceptance_rate, 0.5);
}

TEST(Annealed, BadOptionsNameTheValueAndDivergenceIsAnError) {
  GaussianNoiseConditional e(torch::zeros({1, 2, 2}), 1.0);
  const auto x = torch::zeros({2, 1, 2, 2});
  const AnnealedOptions ok;
  EXPECT_THROW(annealed_langevin(e, x, AnnealedOptions(ok).sigma_min(0)), UsageError);
  EXPECT_THROW(annealed_langevin(e, x, AnnealedOptions(ok).sigma_max(0.005)), UsageError);
  EXPECT_THROW(annealed_langevin(e, x, AnnealedOptions(ok).levels(0)), UsageError);
  EXPECT_THROW(annealed_langevin(e, x, AnnealedOptions(ok).steps_per_level(0)), UsageError);
  EXPECT_THROW(annealed_langevin(e, x, AnnealedOptions(ok).epsilon(std::nan(""))), UsageError);
  try {
    annealed_langevin(e, x, AnnealedOptions(ok).corrector("hmc"));
    ADD_FAILURE() << "no error";
  } catch (const UsageError& err) {
    EXPECT_NE(std::string(err.what()).find("hmc"), std::string::npos);
  }
  // A step far too large: the chain explodes to inf and the sampler says so.
  for (const char* c : {"ula", "mala"})
    EXPECT_THROW(annealed_langevin(e, torch::ones({2, 1, 2, 2}),
                                   AnnealedOptions(ok).epsilon(1e30).levels(2).steps_per_level(50).corrector(c)),
                 DivergenceError)
        << c;
}

TEST(NoiseConditional, AutoSamplerIsAnnealedExactlyForNoiseConditionalEnergies) {
  EXPECT_EQ(resolve_sampler("auto", true), "annealed");
  EXPECT_EQ(resolve_sampler("auto", false), "langevin");
  for (bool nc : {true, false}) {
    EXPECT_EQ(resolve_sampler("langevin", nc), "langevin");
    EXPECT_EQ(resolve_sampler("annealed", nc), "annealed");
  }
  try {
    resolve_sampler("hmc", true);
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("hmc"), std::string::npos);
  }
}

TEST(NoiseConditional, TweedieUsesTheEnergyAtItsLevel) {
  // Data N(mu, s^2 I) blurred by sigma: E(x, sigma) = |x - mu|^2 / (2 v), v = s^2 + sigma^2,
  // so z - sigma^2 grad E(z, sigma) = mu + (s^2 / v)(z - mu), the posterior mean,
  // at every sigma. A sigma-blind reading (energy(x), v = s^2) would give
  // z - (sigma^2 / s^2)(z - mu) instead, far off at sigma = 0.3 and 1.
  const auto mu = torch::full({1, 4, 4}, 0.25);
  const double s = 0.1;
  GaussianNoiseConditional e(mu, s);
  auto gen = at::detail::createCPUGenerator(2);
  for (double sigma : {0.05, 0.3, 1.0}) {
    const auto z = mu + sigma * torch::randn({3, 1, 4, 4}, gen);
    const auto x = tweedie_step(e, z, sigma, /*clamp=*/false);
    const auto want = mu + s * s / (s * s + sigma * sigma) * (z - mu);
    EXPECT_LT((x - want).abs().max().item<double>(), 1e-5) << "sigma " << sigma;
  }
}

TEST(NoiseConditional, CompositionsCombineTheTermsLevelByLevel) {
  const auto mu = torch::zeros({1, 2, 2});
  auto nc = std::make_shared<GaussianNoiseConditional>(mu, 0.5);
  auto blind = std::make_shared<GaussianEnergy>(torch::ones({1, 2, 2}), 2.0);
  auto x = torch::rand({4, 1, 2, 2});
  auto sigma = torch::tensor({0.1, 0.5, 1.0, 2.0});
  EXPECT_FALSE(blind->noise_conditional());
  EXPECT_TRUE(blind->energy_at(x, sigma).equal(blind->energy(x)));  // the sigma-blind default
  const auto want_sum = nc->energy_at(x, sigma) - 0.5 * blind->energy(x);
  auto sum = make_not(nc, blind, 0.5);
  EXPECT_TRUE(sum->noise_conditional());
  EXPECT_TRUE(torch::allclose(sum->energy_at(x, sigma), want_sum));
  EXPECT_TRUE(torch::allclose(sum->energy(x), nc->energy(x) - 0.5 * blind->energy(x)));
  auto both = make_or({nc, blind}, 1.0);
  EXPECT_TRUE(both->noise_conditional());
  const auto want_or = -torch::logsumexp(-torch::stack({nc->energy_at(x, sigma), blind->energy(x)}, 1), 1);
  EXPECT_TRUE(torch::allclose(both->energy_at(x, sigma), want_or));
  EXPECT_FALSE(make_and({blind, blind})->noise_conditional());
  // EnergyAtSigma: one level as an ordinary energy.
  EnergyAtSigma at(*sum, 0.5);
  EXPECT_TRUE(torch::allclose(at.energy(x), sum->energy_at(x, torch::full({4}, 0.5))));
  EXPECT_THROW(EnergyAtSigma(*sum, 0.0), c10::Error);
}

TEST(NoiseConditional, DenoisedGuidanceReadsTheTweedieEstimate) {
  // Denoiser: data N(mu, s^2 I), so x_hat = mu + s^2 / (s^2 + sigma^2) (x - mu)
  // (then clamped to [0,1]). Inner: |x - c|^2 / 2, gradient x - c. The guided
  // energy is inner(x_hat), and its gradient is inner's gradient at x_hat.
  const double s = 0.2;
  auto mu = torch::full({1, 3, 3}, 0.5), c = torch::full({1, 3, 3}, 0.9);
  auto denoiser = std::make_shared<GaussianNoiseConditional>(mu, s);
  auto inner = std::make_shared<GaussianEnergy>(c, 1.0);
  DenoisedGuidanceEnergy guided(inner, denoiser);
  EXPECT_TRUE(guided.noise_conditional());
  auto gen = at::detail::createCPUGenerator(6);
  const auto x = 0.5 + 0.4 * torch::randn({4, 1, 3, 3}, gen);
  const auto sig = torch::tensor({0.05f, 0.2f, 0.5f, 1.0f});
  const auto k = (s * s / (s * s + sig.pow(2))).view({-1, 1, 1, 1});
  const auto x_hat = (mu + k * (x - mu)).clamp(0, 1);
  EXPECT_TRUE(torch::allclose(guided.energy_at(x, sig), inner->energy(x_hat), 1e-5, 1e-6));
  const auto xr = x.clone().requires_grad_(true);
  const auto g = torch::autograd::grad({guided.energy_at(xr, sig).sum()}, {xr})[0];
  EXPECT_TRUE(torch::allclose(g, x_hat - c, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(guided.energy(x), inner->energy(x)));  // no level: the image as it is
  torch::NoGradGuard off;  // scoring with autograd off still denoises
  EXPECT_TRUE(torch::allclose(guided.energy_at(x, sig), inner->energy(x_hat), 1e-5, 1e-6));
}

TEST(NoiseConditional, GuidedPriorInOnePassEqualsTheSumOfItsTerms) {
  // The fused form (prior weight inside DenoisedGuidanceEnergy: one denoiser
  // pass per evaluation) against the plain sum of the two terms (two passes):
  // the same values and input gradients, level by level.
  const double s = 0.3, w = 0.7;
  auto gen = at::detail::createCPUGenerator(8);
  auto mu = 0.5 + 0.1 * torch::randn({1, 3, 3}, gen, torch::kFloat64);
  auto denoiser = std::make_shared<GaussianNoiseConditional>(mu, s);
  auto inner = std::make_shared<GaussianEnergy>(torch::rand({1, 3, 3}, gen, torch::kFloat64), 0.5);
  auto fused = std::make_shared<DenoisedGuidanceEnergy>(inner, denoiser, w);
  auto plain = std::make_shared<SumEnergy>(std::vector<SumEnergy::Term>{
      {w, denoiser}, {1.0, std::make_shared<DenoisedGuidanceEnergy>(inner, denoiser)}});
  const auto x = 0.5 + 0.4 * torch::randn({5, 1, 3, 3}, gen, torch::kFloat64);
  const auto sig = torch::tensor({0.01, 0.05, 0.2, 0.5, 1.0}, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(fused->energy_at(x, sig), plain->energy_at(x, sig), 1e-10, 1e-12));
  EXPECT_TRUE(torch::allclose(fused->energy(x), plain->energy(x), 1e-10, 1e-12));
  for (const auto& sigma : {0.01, 0.3, 1.0}) {
    EnergyAtSigma f(*fused, sigma), p(*plain, sigma);
    const auto gf = energy_grad(f, x), gp = energy_grad(p, x);
    EXPECT_LT((gf - gp).abs().max().item<double>(), 1e-5 * gp.abs().max().item<double>()) << "sigma " << sigma;
    EXPECT_GT(gp.abs().max().item<double>(), 0.1);  // not a comparison of zeros
  }
  EXPECT_THROW(DenoisedGuidanceEnergy(inner, denoiser, std::nan("")), c10::Error);
}

}  // namespace
}  // namespace ebm
