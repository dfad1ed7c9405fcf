// attacks.h: adversarial attacks on classifiers, in pixel space [0,1].
//
//   fgsm      one signed-gradient step of size eps (Goodfellow et al. 2015)
//   pgd       L-inf projected gradient descent with random start, steps, step
//             size and restarts (Madry et al. 2018)
//   cw_l2     Carlini-Wagner L2: tanh box, Adam, confidence kappa, binary
//             search over the constant c (Carlini & Wagner 2017)
//   bpda+eot  pgd (or fgsm) driven by bpda_eot_model(): the gradient of the
//             classifier at the PURIFIED image, passed straight through the
//             purifier (BPDA, Athalye et al. 2018), averaged over K purifier
//             draws (EOT). This is the adaptive attack on a stochastic purifier.
//
// Every L-inf attack returns x_adv with ||x_adv - x||_inf <= eps EXACTLY and
// x_adv in [0,1] (the last operation is a projection onto the intersection of
// the ball and the box, which is an elementwise clamp). Defaults follow the
// common MNIST suites: eps 0.3, 40 steps of 0.01, random start (MadryLab
// mnist_challenge; torchattacks/Foolbox/ART use the same eps on MNIST).
//
// Shapes: x [B,C,H,W] float32 in [0,1]; y [B] int64 labels; logits [B,K].
#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#include <functional>

#include "ebm/core/energy.h"

namespace ebm {

/// The model as an L-inf attack sees it: the gradient of its loss and the
/// logits on which success is judged. Decoupling the two is what lets the
/// same PGD loop attack a bare classifier or a classifier behind a purifier.
struct AttackModel {
  /// (x [B,C,H,W], y [B]) -> d(sum_b loss_b)/dx [B,C,H,W], where loss_b is the
  /// cross-entropy of example b. If `logits` is non-null it receives the
  /// (detached) logits [B,K] the attack judges success on, at that same x.
  std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& y, torch::Tensor* logits)> grad;
  /// x [B,C,H,W] -> logits [B,K] without gradient (success check at the start).
  std::function<torch::Tensor(const torch::Tensor& x)> logits;
};

/// White-box model: cross-entropy of `clf.logits` and its exact input gradient.
/// `clf` must be a classifier (num_classes() > 0); it is put in eval mode.
AttackModel classifier_model(Energy& clf);

/// A stochastic input transformation (a purifier): x [B,C,H,W] -> [B,C,H,W],
/// drawing its randomness from `gen`.
using Transform = std::function<torch::Tensor(const torch::Tensor& x, at::Generator& gen)>;

/// BPDA+EOT model of `clf` behind `transform`. For each of `eot_samples` draws
/// x'_k = transform(x) (no gradient through the transform), the gradient is
/// d CE(clf(x'_k), y) / d x'_k, i.e. the classifier's gradient at the purified
/// point passed straight through (BPDA with the identity as the backward
/// approximation); the returned gradient is the mean over the draws (EOT), and
/// the logits are the mean logits over the same draws. Draws come from a
/// generator seeded with `seed` and advanced across calls, so a run is
/// deterministic for a given seed.
AttackModel bpda_eot_model(Energy& clf, Transform transform, int64_t eot_samples, uint64_t seed = 0);

struct FgsmOptions {
  /// L-inf radius; also the size of the single step.
  TORCH_ARG(double, eps) = 0.3;
};

/// x_adv = clamp(x + eps * sign(grad_x loss), 0, 1). -> [B,C,H,W]
torch::Tensor fgsm(const AttackModel& m, const torch::Tensor& x, const torch::Tensor& y, const FgsmOptions& o = {});

struct PgdOptions {
  /// L-inf radius (MNIST standard 0.3).
  TORCH_ARG(double, eps) = 0.3;
  /// Gradient steps (Madry's MNIST challenge: 40).
  TORCH_ARG(int64_t, steps) = 40;
  /// Signed step per iteration (Madry: 0.01).
  TORCH_ARG(double, step_size) = 0.01;
  /// Start from a uniform random point of the eps-ball (intersected with [0,1]).
  TORCH_ARG(bool, random_start) = true;
  /// Independent runs; per example the strongest one is kept (see pgd()).
  TORCH_ARG(int64_t, restarts) = 1;
  /// Seed of the random starts.
  TORCH_ARG(uint64_t, seed) = 0;
};

/// L-inf PGD maximising the cross-entropy:
///   x_0 = x (+ U(-eps, eps) if random_start), projected;
///   x_t+1 = proj(x_t + step_size * sign(grad)), proj = clamp to the eps-ball and [0,1].
/// Per example the result is the FIRST iterate (over all restarts and steps)
/// that the model misclassifies, or, when none does, the final iterate of the
/// restart with the highest loss. Keeping a misclassified iterate makes the
/// attack monotone: more steps or restarts never give a higher accuracy.
/// With steps = 0, restarts = 1 and no random start, pgd is the identity.
/// -> [B,C,H,W]
torch::Tensor pgd(const AttackModel& m, const torch::Tensor& x, const torch::Tensor& y, const PgdOptions& o = {});

struct CwOptions {
  /// kappa: the margin by which the best wrong logit must beat the true one.
  TORCH_ARG(double, confidence) = 0.0;
  /// Initial trade-off constant c (torchattacks default 1; Foolbox 1e-2..).
  TORCH_ARG(double, c) = 1.0;
  /// Binary-search rounds over c (Foolbox default 9). 1 = a single run at c.
  TORCH_ARG(int64_t, binary_search_steps) = 5;
  /// Adam steps per round (torchattacks default 50).
  TORCH_ARG(int64_t, steps) = 100;
  /// Adam learning rate in tanh space (torchattacks default 0.01).
  TORCH_ARG(double, lr) = 0.05;
};

/// Carlini-Wagner L2 (untargeted): minimise ||x_adv - x||_2^2 + c * f(x_adv),
/// f = max(Z_y - max_{j!=y} Z_j, -kappa), with x_adv = (tanh(w)+1)/2 so that it
/// stays in [0,1] without clipping. c is binary-searched per example: up on
/// failure (x10 until a success brackets it), then bisected. Per example the
/// smallest-L2 successful x_adv is returned; examples never fooled come back
/// unchanged (x). CW is unbounded in L-inf; the evaluator reports its L2.
/// -> [B,C,H,W]
torch::Tensor cw_l2(Energy& clf, const torch::Tensor& x, const torch::Tensor& y, const CwOptions& o = {});

/// Project x_adv onto {||. - x||_inf <= eps} ∩ [0,1]; exact (no tolerance).
torch::Tensor project_linf(const torch::Tensor& x_adv, const torch::Tensor& x, double eps);

/// Per-example cross-entropy [B] of logits [B,K] against y [B].
torch::Tensor per_example_ce(const torch::Tensor& logits, const torch::Tensor& y);

}  // namespace ebm
