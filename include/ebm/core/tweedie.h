// tweedie.h: the annealed renoise-denoise sampler for denoising-score-matching
// energies. A DSM energy E trained at noise level sigma has
//   x_hat(z) = z - sigma^2 * grad E(z)   (Tweedie's formula)
// as its estimate of E[x | z], the clean image behind a noisy z. Alternating
// "add noise of std sigma" and "denoise with Tweedie" while sigma shrinks
// walks a start towards the data manifold at decreasing scales, the
// deterministic-denoiser cousin of annealed Langevin (Song & Ermon 2019).
//
// One chain, for levels l = 0..levels-1 and repeats r = 0..repeats-1:
//   sigma_l = sigma_max * (sigma_min / sigma_max)^(l / (levels-1))   (geometric)
//   z       = x + sigma_l * N(0, I)
//   x       = clamp(z - sigma_l^2 * grad E(z), 0, 1)
//   x       = known ? x_0 : x                     (frozen pixels, optional)
// The last level's Tweedie step makes the result a denoised estimate, not a
// noisy sample. Used by inpainting, where the frozen known pixels anchor the
// chain. Without an anchor it drifts: a single (not noise-conditional) DSM
// energy under-denoises inputs noisier than sigma, the residual adds to the
// next level's noise, and on the shipped MNIST priors an unconditional chain
// from noise ends as noise, which is why composition does not use it.
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>

#include "ebm/core/energy.h"

namespace ebm {

struct TweedieOptions {
  /// First (largest) noise level; about the largest sigma the energy was trained at.
  TORCH_ARG(double, sigma_max) = 1.0;
  /// Last noise level (> 0, < sigma_max). Larger = smoother result.
  TORCH_ARG(double, sigma_min) = 0.1;
  /// Number of noise levels (>= 2).
  TORCH_ARG(int64_t, levels) = 30;
  /// Renoise-denoise steps per level (>= 1).
  TORCH_ARG(int64_t, repeats) = 3;
};

/// One Tweedie step, the single place the formula lives:
///   x_hat = clamp(z - sigma^2 * grad E(z, sigma), 0, 1)      z, x_hat: [B,C,H,W]
/// (E(z, sigma) = e.energy_at: a noise-conditional energy at this level)
/// (clamp = false: the unclamped estimate, for analytic energies on R^n).
/// Throws DivergenceError when the gradient is not finite, as langevin() does.
torch::Tensor tweedie_step(Energy& e, const torch::Tensor& z, double sigma, bool clamp = true);

/// Throws UsageError naming the bad value.
void check_tweedie_options(const TweedieOptions& o);

/// Run the chain from x0 [B,C,H,W]. known_mask (optional, broadcastable to x0):
/// where != 0 the pixel stays bit-identical to x0. Noise comes from `gen`.
/// `on_step(done, total)` reports progress in denoising steps. -> [B,C,H,W] in [0,1]
torch::Tensor tweedie_sample(Energy& e, const torch::Tensor& x0, const TweedieOptions& o, at::Generator& gen,
                             const torch::Tensor& known_mask = {},
                             const std::function<void(int64_t, int64_t)>& on_step = {});

}  // namespace ebm
