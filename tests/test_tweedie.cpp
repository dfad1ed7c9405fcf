// test_tweedie.cpp: the annealed renoise-denoise sampler against the
// analytic Gaussian energy, where Tweedie's step has a closed form:
//   E(x) = ||x - mu||^2 / (2 tau^2)  =>  z - s^2 grad E(z) = mu + (1 - s^2/tau^2)(z - mu).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "ebm/core/chains.h"
#include "ebm/core/common.h"
#include "ebm/core/energy.h"
#include "ebm/core/tweedie.h"

namespace {

using ebm::GaussianEnergy;
using ebm::TweedieOptions;

torch::Tensor interior_mu(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return 0.2 + 0.6 * torch::rand({1, 8, 8}, gen);  // inside [0,1]: the clamp never binds
}

}  // namespace

// When the last level equals the energy's own width, the last step lands on
// mu exactly, wherever the chain was.
TEST(Tweedie, LastStepAtMatchedSigmaReturnsTheMean) {
  const auto mu = interior_mu(1);
  GaussianEnergy g(mu, 0.1);
  auto gen = at::detail::createCPUGenerator(3);
  const auto x0 = torch::rand({5, 1, 8, 8}, gen);
  const auto x = ebm::tweedie_sample(g, x0, TweedieOptions().sigma_max(0.8).sigma_min(0.1).levels(6).repeats(2), gen);
  EXPECT_LT((x - mu).abs().max().item<double>(), 1e-5);
}

// Two levels, the first at tau (lands on mu), the second at s < tau:
// x - mu = (1 - s^2/tau^2) * s * xi, so its std is (1 - s^2/tau^2) * s.
TEST(Tweedie, ResidualNoiseMatchesTheClosedForm) {
  const double tau = 0.3, s = 0.15;
  const auto mu = torch::full({1, 32, 32}, 0.5);
  GaussianEnergy g(mu, tau);
  auto gen = at::detail::createCPUGenerator(7);
  const auto x0 = torch::full({64, 1, 32, 32}, 0.5);
  const auto x = ebm::tweedie_sample(g, x0, TweedieOptions().sigma_max(tau).sigma_min(s).levels(2).repeats(1), gen);
  const double expected = (1 - s * s / (tau * tau)) * s;  // 0.1125; 65536 pixels: ~0.3% sampling error
  EXPECT_NEAR((x - mu).std().item<double>(), expected, 0.02 * expected);
  EXPECT_NEAR((x - mu).mean().item<double>(), 0.0, 3e-3);
}

TEST(Tweedie, KnownPixelsStayBitIdentical) {
  GaussianEnergy g(interior_mu(2), 0.2);
  auto gen = at::detail::createCPUGenerator(5);
  const auto x0 = torch::rand({3, 1, 8, 8}, gen);
  const auto known = torch::rand({3, 1, 8, 8}, gen) < 0.5;
  const auto x = ebm::tweedie_sample(g, x0, TweedieOptions().sigma_max(0.5).sigma_min(0.05).levels(4), gen, known);
  EXPECT_TRUE(torch::equal(x.masked_select(known), x0.masked_select(known)));
  EXPECT_FALSE(torch::equal(x.masked_select(~known), x0.masked_select(~known)));
}

TEST(Tweedie, ProgressCountsEveryStep) {
  GaussianEnergy g(interior_mu(3), 0.2);
  auto gen = at::detail::createCPUGenerator(1);
  int64_t last = 0, calls = 0, total = 0;
  ebm::tweedie_sample(g, torch::rand({2, 1, 8, 8}), TweedieOptions().levels(5).repeats(3), gen, {},
                      [&](int64_t done, int64_t t) { last = done, total = t, ++calls; });
  EXPECT_EQ(calls, 15);
  EXPECT_EQ(last, 15);
  EXPECT_EQ(total, 15);
}

TEST(Tweedie, BadOptionsAreRefused) {
  EXPECT_THROW(ebm::check_tweedie_options(TweedieOptions().sigma_max(0.1).sigma_min(0.1)), ebm::UsageError);
  EXPECT_THROW(ebm::check_tweedie_options(TweedieOptions().sigma_min(0)), ebm::UsageError);
  EXPECT_THROW(ebm::check_tweedie_options(TweedieOptions().levels(1)), ebm::UsageError);
  EXPECT_THROW(ebm::check_tweedie_options(TweedieOptions().repeats(0)), ebm::UsageError);
  EXPECT_NO_THROW(ebm::check_tweedie_options(TweedieOptions()));
}

// tweedie_step is the closed form above, one call.
TEST(Tweedie, StepIsTheClosedForm) {
  const double tau = 0.3, s = 0.2;
  const auto mu = interior_mu(5);
  GaussianEnergy g(mu, tau);
  auto gen = at::detail::createCPUGenerator(2);
  const auto z = mu + 0.05 * torch::randn({4, 1, 8, 8}, gen);
  const auto expect = mu + (1 - s * s / (tau * tau)) * (z - mu);
  EXPECT_TRUE(torch::allclose(ebm::tweedie_step(g, z, s), expect, 1e-5, 1e-6));
}

// A non-finite gradient is a divergence, as in langevin().
TEST(Tweedie, StepRejectsNonFiniteGradients) {
  GaussianEnergy g(torch::full({1, 4, 4}, 0.5), 0.1);
  auto z = torch::full({1, 1, 4, 4}, 0.5);
  z[0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(ebm::tweedie_step(g, z, 0.1), ebm::DivergenceError);
}

// best_of_k_rows against a brute-force loop over items and chains.
TEST(Chains, BestOfKMatchesBruteForce) {
  auto gen = at::detail::createCPUGenerator(11);
  for (int64_t k : {1, 2, 5}) {
    const int64_t b = 7;
    const auto score = torch::randn({k * b}, gen);
    const auto rows = ebm::best_of_k_rows(score, k);
    ASSERT_EQ(rows.numel(), b);
    for (int64_t i = 0; i < b; ++i) {
      int64_t best = i;
      for (int64_t c = 1; c < k; ++c)
        if (score[c * b + i].item<float>() < score[best].item<float>()) best = c * b + i;
      EXPECT_EQ(rows[i].item<int64_t>(), best) << "k " << k << " item " << i;
    }
  }
  EXPECT_THROW(ebm::best_of_k_rows(torch::zeros({6}), 0), ebm::UsageError);
}
