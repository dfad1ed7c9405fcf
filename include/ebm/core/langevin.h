// langevin.h: the one sampler. Training negatives, unconditional and
// compositional sampling, denoising, inpainting and purification all call
// langevin() with different options and terms.
//
// One step, for t = 0..steps-1:
//   g     = clip(grad_x E(x_t), +-grad_clip)            (energy gradient, optional clip)
//         + 2 * fidelity_weight * (x_t - y)              (data fidelity term, optional)
//   x'    = x_t - step_t * g + noise_t * N(0, I)
//   x'    = known ? x_0 : x'                              (frozen pixels stay bit-identical)
//   x'    = clamp(x', center - eps, center + eps)        (L-inf ball, optional)
//   x_t+1 = clamp(x', clamp_min, clamp_max)               (box, optional)
// step_t = step_size * step_schedule(t), noise_t = noise * noise_schedule(t).
//
// Step size and noise are separate on purpose: EBM practice uses noise far
// below sqrt(2*step) (a low-temperature sampler). With noise = sqrt(2*step)
// and no clamp the chain is exact (unadjusted) Langevin for density exp(-E).
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <optional>

#include "ebm/core/energy.h"

namespace ebm {

/// Multiplier applied to a base value over a chain of T steps.
struct Schedule {
  enum Kind { kConstant, kLinear, kCosine, kGeometric };
  Kind kind = kConstant;
  /// Multiplier reached at the last step (1.0 = constant).
  double end_factor = 1.0;
  /// Multiplier at step t of T (t in [0, T)).
  double factor(int64_t t, int64_t total) const;
  /// Parse "constant", "linear:0.1", "cosine:0.01", "geometric:0.1"; UsageError otherwise.
  static Schedule parse(const std::string& spec);
  /// The spec parse() reads back: "constant", "geometric:0.1", ...
  std::string str() const;
};

struct LangevinOptions {
  /// Number of update steps.
  TORCH_ARG(int64_t, steps) = 60;
  /// Gradient step size (multiplies grad E). IGEBM/UvA use ~10 on [0,1] images.
  TORCH_ARG(double, step_size) = 10.0;
  /// Std of the Gaussian noise added per step; IGEBM/UvA use 0.005.
  TORCH_ARG(double, noise) = 0.005;
  /// Clamp every iterate to [clamp_min, clamp_max].
  TORCH_ARG(bool, clamp) = true;
  TORCH_ARG(double, clamp_min) = 0.0;
  TORCH_ARG(double, clamp_max) = 1.0;
  /// Elementwise cap on |grad_x E| per step; 0 = off. UvA's tutorial uses 0.03.
  TORCH_ARG(double, grad_clip) = 0.0;
  /// Stop early when max |x_t+1 - x_t| < tolerance (0 = never; noise-free chains only).
  TORCH_ARG(double, tolerance) = 0.0;
  TORCH_ARG(Schedule, step_schedule) = {};
  TORCH_ARG(Schedule, noise_schedule) = {};
  /// Seed of the noise when no generator is passed to langevin().
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Optional extra terms. Tensors are [B,C,H,W] or broadcastable to x.
struct LangevinTerms {
  /// Data fidelity: adds fidelity_weight * ||x - y||^2 to the energy. y = fidelity_target.
  torch::Tensor fidelity_target;
  double fidelity_weight = 0.0;
  /// Frozen pixels: where known_mask != 0, x stays bit-identical to x0.
  torch::Tensor known_mask;
  /// L-inf ball: every iterate is projected into ||x - linf_center||_inf <= linf_eps.
  torch::Tensor linf_center;
  double linf_eps = 0.0;
};

/// What the progress hook sees after each step.
struct LangevinStep {
  int64_t step;           // 0-based index of the step just taken
  int64_t total;          // options.steps
  const torch::Tensor& x; // [B,C,H,W] iterate after the step
  const torch::Tensor& energy;  // [B] E(x_t) before the step (prior only, no fidelity)
};
using LangevinHook = std::function<void(const LangevinStep&)>;

struct LangevinResult {
  torch::Tensor x;        // [B,C,H,W] final iterate (last finite one if diverged)
  torch::Tensor energy;   // [B] E at the final iterate (prior only)
  int64_t steps_run = 0;
  bool diverged = false;  // a NaN/Inf energy or gradient stopped the chain
  bool converged = false; // the tolerance stopped the chain early
};

/// Run the chain from x0 [B,C,H,W]. Gradients are taken with respect to x only;
/// no parameter gradients are accumulated and no graph is kept across steps.
/// `gen` supplies the noise (a fresh generator seeded with options.seed if null),
/// so callers that must resume bit-exactly can own the RNG state.
LangevinResult langevin(Energy& energy, const torch::Tensor& x0, const LangevinOptions& options,
                        const LangevinTerms& terms = {}, at::Generator* gen = nullptr,
                        const LangevinHook& hook = nullptr);

}  // namespace ebm
