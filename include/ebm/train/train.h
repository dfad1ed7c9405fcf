// train.h: one trainer for every task. Each task is a loss on a batch; the
// loop (data, optimiser, replay buffer, checkpoints, divergence guard,
// progress, card) is shared.
//
// Tasks (--task):
//   clf              cross-entropy classifier (used for mnist-clf, mnist-judge)
//   ebm              unconditional EBM by persistent contrastive divergence:
//                    L = E(x+) - E(x-) + alpha*(E(x+)^2 + E(x-)^2), x- from Langevin
//                    on a replay buffer (IGEBM, Du & Mordatch 2019)
//   jem              JEM (Grathwohl et al. 2020): CE(f(x+), y) + gen_weight*(E(x+) - E(x-)),
//                    E(x) = -logsumexp f(x), same replay-buffer machinery
//   attribute        JEM on an attribute's labels: "digit" (dataset labels) or
//                    "thickness" (terciles of ebm::stroke_thickness on the training set);
//                    E(x|c) = -f(x)[c]
//   dsm              denoising score matching (Vincent 2011): grad_x E(x~) matches
//                    (x~ - x)/sigma^2 for x~ = x + sigma*eps, sigma from `dsm_sigmas`
//   energy-finetune  Liu et al. 2020: CE + ft_weight*(mean relu(E_in - m_in)^2 +
//                    mean relu(m_out - E_out)^2); outliers synthesised from the
//                    in-distribution batch (see synthesize_outliers)
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "ebm/core/langevin.h"
#include "ebm/train/distributed.h"
#include "ebm/train/outliers.h"

namespace ebm {

struct TrainOptions {
  TORCH_ARG(std::string, task) = "ebm";
  /// Dataset name (see data.h); training uses its "fit" split, never val/test.
  TORCH_ARG(std::string, data) = "fashion-mnist";
  /// Output model folder.
  TORCH_ARG(std::string, out) = "";
  /// Architecture, e.g. {"type":"conv-ebm","width":32}; empty = built from
  /// arch_type, width and activation below.
  TORCH_ARG(nlohmann::json, arch) = nlohmann::json();
  /// "conv-ebm" | "conv-classifier"; "" = by task (conv-classifier for clf,
  /// jem, attribute, energy-finetune; conv-ebm for ebm, dsm).
  TORCH_ARG(std::string, arch_type) = "";
  /// Base channel width of the architecture.
  TORCH_ARG(int64_t, width) = 32;
  /// conv-classifier activation: "" = the architecture's (silu) | "leaky_relu".
  TORCH_ARG(std::string, activation) = "";
  /// For task attribute: "digit" or "thickness".
  TORCH_ARG(std::string, attribute) = "digit";
  /// The classifier to start from (weights only): required by energy-finetune,
  /// an optional warm start for jem and clf. Empty = fresh initialisation.
  TORCH_ARG(std::string, init) = "";

  TORCH_ARG(int64_t, steps) = 2000;
  TORCH_ARG(int64_t, batch) = 64;
  /// Adam; beta1 = 0 as in IGEBM/UvA for EBM tasks.
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(double, beta1) = 0.0;
  TORCH_ARG(double, beta2) = 0.999;
  /// Linear learning-rate warm-up (JEM uses 1k iterations).
  TORCH_ARG(int64_t, warmup) = 0;
  /// "constant", or "cosine": decay to 0 over the run after the warm-up.
  TORCH_ARG(std::string, lr_schedule) = "constant";
  /// Random translation of data batches by up to this many pixels (0 = off);
  /// a standard augmentation for the classifier tasks.
  TORCH_ARG(int64_t, augment_shift) = 0;
  /// Per-image Gaussian noise of std ~ U(0, noise_augment) on data batches,
  /// clipped to [0,1] (0 = off). For classifier/attribute tasks whose input
  /// gradients guide Langevin chains: the chains pass through noisy images, so
  /// the classifier must be right about them too (classifier guidance).
  TORCH_ARG(double, noise_augment) = 0.0;
  /// Noise-aware attributes for annealed sampling: each data image gets, with
  /// probability 1 - 1/(L+1), Gaussian noise of a std drawn uniformly from
  /// these L levels (else it stays clean), NOT clipped, as the annealed chains
  /// are not (annealed.h). Empty = off. Classifier/attribute tasks.
  TORCH_ARG(std::vector<double>, noise_augment_sigmas) = {};
  /// Purifier model (an energy whose card may carry a "purify" entry, see
  /// purify.h): each data image is replaced, with probability
  /// purify_fraction, by one purification draw of its clean version, so that a
  /// classifier learns what the purifier outputs. Empty = off. Classifier tasks.
  TORCH_ARG(std::string, purify_augment) = "";
  TORCH_ARG(double, purify_fraction) = 0.5;
  /// Adversarial training (Madry et al. 2018; 0 = off): a share adv_fraction
  /// of each batch is replaced by L-inf PGD examples of this radius against
  /// the classifier being trained. Besides robustness, it makes the input
  /// gradients perceptually aligned (Santurkar et al. 2019), which is what a
  /// guidance classifier for compositional sampling needs. Classifier tasks.
  TORCH_ARG(double, adv_eps) = 0.0;
  TORCH_ARG(double, adv_fraction) = 0.5;
  /// PGD steps (step size 2.5 * eps / steps).
  TORCH_ARG(int64_t, adv_steps) = 7;
  /// Adversarial purification training (0 = off): of the purified images, a
  /// share purify_attack_fraction is first attacked by L-inf PGD of this
  /// radius against the classifier being trained (the grey-box attacker:
  /// the attack sees the classifier only, never the purifier), so that the
  /// classifier learns to read purified adversarial inputs.
  TORCH_ARG(double, purify_attack_eps) = 0.0;
  TORCH_ARG(double, purify_attack_fraction) = 0.5;
  /// PGD steps of that attack; the step size is 2.5 * eps / steps (Madry).
  TORCH_ARG(int64_t, purify_attack_steps) = 10;
  /// Clip the parameter-gradient norm (0 = off).
  TORCH_ARG(double, clip_grad_norm) = 1.0;
  /// Exponential moving average of the weights, decay d in [0, 1) (0 = off):
  /// after every optimiser step w_ema = d * w_ema + (1 - d) * w, starting from
  /// the initial (or --init) weights. The saved model carries w_ema; the
  /// checkpoint keeps both, so a resumed run is bit-exact. NCSNv2 (Song &
  /// Ermon 2020) samples its score models from averaged weights; on
  /// mnist-ncsn it changed little (scripts/train-zoo).
  TORCH_ARG(double, ema) = 0.0;
  /// Std of Gaussian noise added to data batches (dequantisation; JEM 0.03, UvA 0.005).
  TORCH_ARG(double, data_noise) = 0.005;

  // Persistent contrastive divergence (tasks ebm, jem, attribute).
  TORCH_ARG(int64_t, buffer_size) = 10000;
  TORCH_ARG(double, reinit) = 0.05;
  /// Where PCD chains start (the initial buffer and every re-init):
  ///   "uniform"   U(0,1) pixels (IGEBM, JEM);
  ///   "gaussian"  a per-class Gaussian (mean + full pixel covariance + 0.01 I)
  ///               fitted to the fit split: JEM++'s "informative initialisation"
  ///               (Yang & Ji 2021), so short chains start near the data.
  TORCH_ARG(std::string, buffer_init) = "uniform";
  TORCH_ARG(int64_t, sgld_steps) = 20;
  TORCH_ARG(double, sgld_step) = 10.0;
  TORCH_ARG(double, sgld_noise) = 0.005;
  TORCH_ARG(double, sgld_grad_clip) = 0.03;
  /// Energy L2 penalty alpha*(E+^2 + E-^2).
  TORCH_ARG(double, l2) = 0.1;
  /// Weight of the generative term in jem/attribute (0 = plain classifier).
  TORCH_ARG(double, gen_weight) = 1.0;

  // Denoising score matching.
  TORCH_ARG(std::vector<double>, dsm_sigmas) = std::vector<double>{0.1, 0.2, 0.3};
  /// Clip noisy inputs to [0,1] as restoration does (see dsm_loss).
  TORCH_ARG(bool, dsm_clip) = false;

  // Energy-bounded fine-tuning.
  TORCH_ARG(double, m_in) = std::nan("");   // NaN = from data
  TORCH_ARG(double, m_out) = std::nan("");  // NaN = from data
  TORCH_ARG(double, ft_weight) = 0.1;
  /// Outlier generators of energy-finetune (synthesize_outliers). The default
  /// leaves out "uniform" and "invert", the generators of the OOD test sets
  /// "uniform" and "invert:<name>", so that no reported set is seen in training.
  TORCH_ARG(std::vector<std::string>, outliers) =
      std::vector<std::string>{"pixel-shuffle", "patch-shuffle", "blur", "mixup"};

  // Loop.
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(int64_t, checkpoint_every) = 250;
  TORCH_ARG(int64_t, sample_every) = 0;  // PNG grid of negatives every N steps (0 = off)
  TORCH_ARG(bool, resume) = false;
  /// Stop (as if killed) after this many steps in this process, checkpoint kept (-1 = off).
  TORCH_ARG(int64_t, stop_after) = -1;
  /// Divergence guard: |E| beyond this, or a non-finite loss, triggers a rollback.
  TORCH_ARG(double, energy_limit) = 1e4;
  /// ... and so does a gap |mean E(x+) - mean E(x-)| beyond this (exploding CD gap).
  TORCH_ARG(double, gap_limit) = 1e3;
  TORCH_ARG(int64_t, max_rollbacks) = 3;
  /// Fault injection for tests: treat the loss at this step as NaN, once (-1 = off).
  TORCH_ARG(int64_t, fault_step) = -1;
  /// Images of the val split for the end-of-run metrics (evaluate.h); test
  /// figures come from `ebm eval`, never from training.
  TORCH_ARG(int64_t, eval_n) = 2000;
  /// The command line recorded on the card.
  TORCH_ARG(std::string, command) = "";

  /// Data parallelism over c10d/Gloo (distributed.h). `batch` stays the GLOBAL
  /// batch: each of the world_size ranks trains on batch / world_size rows of
  /// it, so W ranks follow the same trajectory as one process (see train()).
  TORCH_ARG(DistOptions, dist) = DistOptions();
};

/// Fresh chain starts: n -> [n,C,H,W] in [0,1], all randomness from `gen`.
using StartSampler = std::function<torch::Tensor(int64_t n, at::Generator& gen)>;
/// U(0,1) pixels of shape [C,H,W].
StartSampler uniform_starts(std::vector<int64_t> shape);
/// Samples of a Gaussian mixture fitted to images [N,C,H,W] in [0,1]: one
/// component per label value (labels [N] int64; undefined = one component),
/// weighted by class frequency, each with its mean and full pixel covariance
/// plus `ridge` * I, clipped to [0,1]. Every class needs >= 2 images.
StartSampler gaussian_starts(const torch::Tensor& images, const torch::Tensor& labels, double ridge = 0.01);

/// Persistent sample buffer for contrastive divergence.
class ReplayBuffer {
 public:
  /// capacity images of shape [C,H,W], filled from `starts` (default U(0,1)).
  ReplayBuffer(int64_t capacity, std::vector<int64_t> shape, at::Generator& gen, StartSampler starts = {});
  /// Draw n start points: indices into the buffer (returned in *idx) and the
  /// images [n,C,H,W]; each start is replaced by a fresh one with prob `reinit`.
  torch::Tensor sample(int64_t n, double reinit, at::Generator& gen, torch::Tensor* idx);
  /// Write chains back: x [n,C,H,W] at idx [n].
  void update(const torch::Tensor& idx, const torch::Tensor& x);
  torch::Tensor& data() { return data_; }

 private:
  torch::Tensor data_;  // [capacity,C,H,W]
  StartSampler starts_;
};

// Outlier generators (synthesize_outliers, outlier_kinds, outlier_test_sets): outliers.h.

// ---------------------------------------------------------------- losses
// Each returns a scalar tensor, differentiable in its inputs.

/// Contrastive divergence: mean(E+) - mean(E-) + alpha*(mean(E+^2) + mean(E-^2)).
/// e_pos: [B] energies of data; e_neg: [B'] energies of negatives.
torch::Tensor pcd_loss(const torch::Tensor& e_pos, const torch::Tensor& e_neg, double alpha);

/// sigma^2-weighted denoising score matching on x~ = x + sigma*eps:
///   mean_b 0.5*|| sigma_b * grad_x E(x~_b, sigma_b) - eps_b ||^2   (sum over pixels),
/// where E(., sigma) is e.energy_at: a noise-conditional energy is told each
/// image's level, any other ignores it.
/// With clip = true, x~ = clamp(x + sigma*eps, 0, 1) and eps is replaced by the
/// noise actually left after clipping, (x~ - x)/sigma: then x~ - sigma^2 grad E(x~)
/// is trained towards E[x | x~] for clipped noisy images, which is what
/// restoration sees. x, eps: [B,C,H,W]; sigma: [B] > 0. The graph is kept.
torch::Tensor dsm_loss(Energy& e, const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& eps,
                       bool clip = false);

/// Energy-bounded loss of Liu et al. 2020 (without the CE term):
///   mean(relu(e_in - m_in)^2) + mean(relu(m_out - e_out)^2).
torch::Tensor energy_bound_loss(const torch::Tensor& e_in, const torch::Tensor& e_out, double m_in, double m_out);

struct TrainResult {
  nlohmann::json card;  // the saved model's card (empty on ranks > 0 and after --stop-after)
  int64_t steps = 0;
  int64_t rollbacks = 0;
};

/// Train, checkpointing to OUT/checkpoint.pt, and save the final model to OUT
/// (weights.pt + card.json). Throws DivergenceError if the run cannot be
/// stabilised; a diverged model is never saved as final.
///
/// Data parallelism (o.dist().world_size() = W > 1), one call per rank:
///   - every rank loads the fit split; at each step the global batch's indices
///     are drawn from a generator all ranks hold in the same state, and rank r
///     trains on rows [r*B/W, (r+1)*B/W) of it; dsm draws its noise for the
///     global batch too (TaskBatch::shared). Augmentation, replay buffers,
///     Langevin negatives and outliers use a per-rank generator;
///   - gradients are averaged across ranks before clipping and the Adam step,
///     so with a deterministic configuration (no augmentation, 1 thread) W
///     ranks end with one process's weights up to float summation order;
///   - the divergence guard's inputs are max-reduced: all ranks roll back together;
///   - rank 0 alone writes checkpoints (with every rank's buffer and generator),
///     sample grids and the final model; other ranks return an empty card.
///     Rollbacks and --resume read OUT/checkpoint.pt on every rank, so OUT
///     must be on a filesystem all ranks share; resume needs the same W.
/// A lost rank ends the others with a DistributedError within o.dist().timeout().
TrainResult train(const TrainOptions& o);

}  // namespace ebm
