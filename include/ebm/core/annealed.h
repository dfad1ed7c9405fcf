// annealed.h: annealed Langevin on a noise-conditional energy E(x, sigma), the
// sampler of NCSN (Song & Ermon 2019) with the corrector of predictor-corrector
// samplers (Song et al. 2021) and the MCMC correctors of "Reduce, Reuse,
// Recycle" (Du et al. 2023): at each of a decreasing sequence of noise levels
// the chain targets p_sigma(x) ∝ exp(-E(x, sigma)), the data density blurred by
// Gaussian noise of std sigma, so it moves between modes while sigma is large
// and sharpens as sigma shrinks.
//
// For levels i = 0..L-1 (L = levels):
//   sigma_i = sigma_max * (sigma_min / sigma_max)^(i / (L-1))       (geometric)
//   alpha_i = epsilon * sigma_i^2 / sigma_min^2                      (NCSN's step)
//   K corrector steps at sigma_i, each proposing
//     y = x - alpha_i * grad_x E(x, sigma_i) + sqrt(2 alpha_i) * N(0, I)
//   "ula":  x = y                                   (langevin() with noise sqrt(2 alpha))
//   "mala": x = y with probability min(1, exp(log_a)), per chain, where
//     log_a = E(x) - E(y) - (|x - y + alpha grad E(y)|^2 - |y - x + alpha grad E(x)|^2) / (4 alpha)
//     (Metropolis-adjusted: the chain then leaves p_sigma exactly invariant)
// and, with tweedie_end, one last Tweedie step at sigma_min (tweedie.h):
//   x = x - sigma_min^2 * grad_x E(x, sigma_min)      (the posterior mean E[x_0 | x])
//
// Clamping to [0,1] is off by default: it would break MALA's detailed balance
// and bias the analytic tests; image callers clamp the result.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ebm/core/card_entry.h"
#include "ebm/core/energy.h"

namespace ebm {

/// The analytic oracle: data N(mu, s^2 I) blurred by N(0, sigma^2 I) is
/// N(mu, (s^2 + sigma^2) I), so E(x, sigma) = ||x - mu||^2 / (2 (s^2 + sigma^2)).
/// energy(x) is the unblurred data's (sigma = 0).
class GaussianNoiseConditional : public Energy {
 public:
  GaussianNoiseConditional(torch::Tensor mu, double s) : mu_(std::move(mu)), s_(s) {}
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  bool noise_conditional() const override { return true; }
  bool rows_independent() const override { return true; }
  std::string describe() const override;

 private:
  torch::Tensor mu_;
  double s_;
};

struct AnnealedOptions {
  /// First (largest) noise level: about the data's spread (NCSN: 1 on [0,1] images).
  TORCH_ARG(double, sigma_max) = 1.0;
  /// Last (smallest) noise level, > 0 and < sigma_max.
  TORCH_ARG(double, sigma_min) = 0.01;
  /// Number of noise levels L (>= 1; 1 = sigma_min only).
  TORCH_ARG(int64_t, levels) = 10;
  /// Corrector steps K per level (>= 1).
  TORCH_ARG(int64_t, steps_per_level) = 100;
  /// epsilon: the step at sigma_min; alpha_i = epsilon * sigma_i^2 / sigma_min^2 (NCSN: 2e-5).
  TORCH_ARG(double, epsilon) = 2e-5;
  /// "ula" (unadjusted) or "mala" (Metropolis-adjusted).
  TORCH_ARG(std::string, corrector) = "ula";
  /// End with a Tweedie step at sigma_min (the denoised posterior mean).
  TORCH_ARG(bool, tweedie_end) = true;
  /// Clamp every iterate to [0, 1] (images; not with MALA's exactness in mind).
  TORCH_ARG(bool, clamp) = false;
  /// Seed of the noise when no generator is passed.
  TORCH_ARG(uint64_t, seed) = 0;
};

/// The annealed sampler for [0,1] images that `ebm sample` and `ebm compose`
/// use on noise-conditional energies: sigma 1 -> 0.01 over 10 levels (NCSN's
/// schedule for MNIST) with 20 ULA steps per level and epsilon 2e-5, then a
/// Tweedie step. A model card's "sampler" entry may replace these.
AnnealedOptions image_annealed_sampler();

/// Which chain a sampler name means: "langevin" or "annealed". "auto" is
/// annealed exactly when the energy is noise-conditional (Energy::
/// noise_conditional); "langevin" and "annealed" mean themselves. The one rule
/// `ebm sample` and `ebm compose` share. UsageError naming any other value.
std::string resolve_sampler(const std::string& sampler, bool noise_conditional);

/// The sigma of level i of L (geometric from sigma_max to sigma_min).
double annealed_sigma(const AnnealedOptions& o, int64_t level);

/// UsageError naming the bad value.
void check_annealed_options(const AnnealedOptions& o);

/// The annealed sampler's keys of a card entry (sigma_max, sigma_min, levels,
/// steps_per_level, epsilon, corrector) into `o`; when the card supplied any,
/// the result is checked, and a DataError names the entry if it is invalid.
void take_annealed_keys(CardEntry& entry, AnnealedOptions& o);

struct AnnealedResult {
  torch::Tensor x;  ///< [B,C,H,W] the final iterate (after the Tweedie step, if any)
  std::vector<double> sigmas;      ///< the L noise levels
  std::vector<double> acceptance;  ///< MALA: accepted share of proposals per level; ULA: all 1
  double acceptance_rate = 1.0;    ///< over all levels
  int64_t energy_evaluations = 0;  ///< gradient evaluations (the cost)
};

/// Run the annealed chain from x0 [B,C,H,W] on e.energy_at(x, sigma_i) (a
/// sigma-blind energy is used unchanged at every level). Throws DivergenceError when an
/// energy or gradient is not finite. `on_level(i, L)` reports progress.
AnnealedResult annealed_langevin(Energy& e, const torch::Tensor& x0, const AnnealedOptions& o,
                                 at::Generator* gen = nullptr,
                                 const std::function<void(int64_t, int64_t)>& on_level = {});

}  // namespace ebm
