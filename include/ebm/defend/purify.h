// purify.h: adversarial purification by Langevin from the input on an EBM
// (Hill et al. 2021; Yoon et al. 2021), through the shared sampler.
//
//   x_0 = clamp(x + init_noise * N(0, I), 0, 1)         (optional; washes out
//                                                        the small structured
//                                                        perturbation)
//   x_T = langevin(E, x_0, steps, step_size, noise)     (back to the data manifold)
//
// With a denoising-score-matching energy, grad E(x~) ~ (x~ - x)/sigma^2, so a
// step size of about sigma^2 is a Tweedie denoising step; a geometric step
// schedule anneals from coarse to fine noise levels.
// steps = 0 is NO purification at all (identity, no initial noise either), so
// that the "0 steps" point of a curve is the undefended classifier.
#pragma once

#include <set>

#include <torch/arg.h>
#include <torch/types.h>

#include "ebm/core/energy.h"
#include "ebm/core/langevin.h"

#include <nlohmann/json.hpp>

namespace ebm {

struct PurifyOptions {
  /// Langevin steps; 0 = identity (no purification).
  TORCH_ARG(int64_t, steps) = 50;
  /// Gradient step size on the energy (DSM energies: ~sigma^2 of the noise to remove).
  TORCH_ARG(double, step_size) = 0.01;
  /// Langevin noise std per step.
  TORCH_ARG(double, noise) = 0.01;
  /// Std of the Gaussian noise added to the input before the chain (0 = none).
  TORCH_ARG(double, init_noise) = 0.2;
  /// Step schedule over the chain (see langevin.h), e.g. geometric:0.1.
  TORCH_ARG(Schedule, step_schedule) = {};
  /// Noise schedule over the chain.
  TORCH_ARG(Schedule, noise_schedule) = {};
  /// Elementwise cap on |grad E| (0 = off).
  TORCH_ARG(double, grad_clip) = 0.0;
  /// Purification draws whose logits are averaged by purified_logits().
  TORCH_ARG(int64_t, draws) = 1;
};

/// Throws UsageError naming the bad value.
void check_purify_options(const PurifyOptions& o);

/// The defaults above, overridden by a model card's "purify" entry when it has
/// one: {"steps","step_size","noise","init_noise","grad_clip","draws",
/// "step_schedule","noise_schedule"} (each optional). Throws DataError on a
/// malformed entry.
/// `base` with the card's "purify" entry applied, except the keys in `given`
/// (settings the caller fixed, e.g. from flags). DataError on a malformed entry.
PurifyOptions purify_options_from_card(const nlohmann::json& card, PurifyOptions base = {},
                                       const std::set<std::string>& given = {});
/// {"step_size","noise","init_noise","step_schedule","noise_schedule","grad_clip","draws"}
/// (steps are per-call, so not included), as reports and cards record them.
nlohmann::json purify_options_json(const PurifyOptions& p);

/// One purification draw: x [B,C,H,W] in [0,1] -> [B,C,H,W] in [0,1].
/// All randomness (initial noise, Langevin noise) comes from `gen`.
torch::Tensor purify(Energy& ebm, const torch::Tensor& x, const PurifyOptions& o, at::Generator& gen);

/// Classify after purification: logits [B,K] of `clf`, averaged over o.draws()
/// independent purification draws of x [B,C,H,W]. No gradient. With
/// o.noise() == 0 (randomness at the start only, as the shipped purifier) the
/// draws run as one batch of draws * B rows, with the same starts, hence the
/// same result up to float rounding, as the draws one after another.
torch::Tensor purified_logits(Energy& clf, Energy& ebm, const torch::Tensor& x, const PurifyOptions& o,
                              at::Generator& gen);

}  // namespace ebm
