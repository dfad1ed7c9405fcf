// attributes.h: compositional generation on top of the energy algebra
// (compose.h) and the expression language (expr.h):
//   - AttributeSet: attribute models (`ebm train --task attribute`) and the
//     atoms they define, e.g. digit=3, thickness=thin (alias thin);
//   - build_energy: an expression -> one Energy (+ an unconditional prior);
//   - calibrate_attribute: the temperature that makes an attribute model's
//     -log p(c|x) a calibrated log-probability, stored in its card;
//   - Judges + judge_expr: score samples independently of the generator
//     (a separate classifier for digits, the stroke measurement for thickness).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "ebm/core/annealed.h"
#include "ebm/core/energy.h"
#include "ebm/core/expr.h"
#include "ebm/core/langevin.h"

namespace ebm {

using json = nlohmann::json;

/// One attribute model: a classifier over the values of one attribute.
struct AttributeModel {
  std::string path;                  // model folder
  std::string name;                  // attribute name, e.g. "digit", "thickness"
  std::vector<std::string> classes;  // its values, e.g. "0".."9", "thin","medium","thick"
  bool nll = true;                   // card "class_energy": "nll" (default) or "logit"
  double temperature = 1.0;          // card "calibration"."temperature" (1 when uncalibrated)
  json card;
  EnergyPtr model;
};

class AttributeSet {
 public:
  AttributeSet() = default;
  /// Load each model folder; its card must carry "attribute": {"attribute", "classes"}.
  explicit AttributeSet(const std::vector<std::string>& model_paths);

  /// (model index, class index) of an atom: "digit=3", or an alias naming a value of
  /// exactly one attribute ("thin", "thick"). UsageError listing what is available
  /// for an unknown attribute or value, or for an ambiguous alias.
  std::pair<int64_t, int64_t> resolve(const std::string& atom) const;
  /// The calibrated energy of an atom; "model:PATH" atoms load that model's energy.
  EnergyPtr atom_energy(const std::string& atom) const;
  /// "digit=0|1|...|9, thickness=thin|medium|thick"
  std::string available() const;
  const std::vector<AttributeModel>& models() const { return models_; }
  /// The model of attribute `name`, or nullptr.
  const AttributeModel* find(const std::string& name) const;

 private:
  std::vector<AttributeModel> models_;
};

struct ComposeOptions {
  /// NOT: E_pos - alpha * E_neg (Du et al. 2020 use a small alpha; RECIPES.md).
  /// -alpha * (-log p(c|x)) is unbounded below as p -> 0, so a large alpha lets
  /// the chain run off into adversarial patterns. What matters is guidance *
  /// alpha, the negated term's weight: 1 measured best of {50, 1, 0.2} on
  /// digit=7 & !thick (guidance 100), and `ebm compose` keeps it at 1 with
  /// guidance 200 and alpha 0.005, chosen on a proxy judge, never on the
  /// reporting judge (docs/compose.md).
  TORCH_ARG(double, not_weight) = 0.005;
  /// OR: -logsumexp(-s*E_i)/s. With calibrated -log p(c|x) atoms, s = 1 is
  /// exactly -log(sum_i p(c_i|x)); Du et al.'s code uses s = 100 (a soft min).
  TORCH_ARG(double, or_temperature) = 1.0;
  /// Weight of the unconditional prior added once to the expression.
  TORCH_ARG(double, prior_weight) = 1.0;
  /// Guidance scale g on every attribute atom: sampling p(x) * prod p(c|x)^g
  /// (classifier guidance, Dhariwal & Nichol 2021). g = 1 is the Bayes
  /// posterior; larger g trades diversity for attribute fidelity. Of 1, 5 and
  /// 100 only 100 made chains change digit identity; 200 with not_weight
  /// 0.005 raised OR and kept NOT on the proxy judge.
  TORCH_ARG(double, guidance) = 200.0;
  /// Where the atoms read the image when the prior is noise-conditional:
  /// "denoised" (the prior's Tweedie estimate at each level;
  /// DenoisedGuidanceEnergy in core/compose.h) | "noisy" (the chain's noisy
  /// image itself, for noise-aware attribute models). Ignored otherwise.
  TORCH_ARG(std::string, guide_on) = "denoised";
};

/// The energy of an expression: prior_weight * prior(x) + guidance * E_expr(x), where
/// E_expr sums AND terms, negates NOT terms with not_weight, soft-mins OR terms,
/// and scales weighted terms. `prior` may be null (no prior).
EnergyPtr build_energy(const Expr& e, const AttributeSet& attrs, const ComposeOptions& o, EnergyPtr prior);

/// Fit the temperature T minimising the mean NLL of the attribute model at `path`
/// on the VALIDATION split of its training data (labels: the dataset's for digit,
/// the stroke measurement with the card's tercile boundaries for thickness), and
/// store {"temperature","nll_t1","nll","split","n"} as the card's "calibration".
/// Returns that JSON. T is searched over [0.05, 20] (golden section on log T).
json calibrate_attribute(const std::string& path, const std::string& root = "");

/// Independent judges of generated samples.
struct Judges {
  /// Digit classifier, never used for generation (models/mnist-judge).
  EnergyPtr digit;
  std::string digit_path;
  /// Tercile boundaries of stroke thickness (from the thickness model's card,
  /// i.e. its training data): thin <= lo < medium <= hi < thick.
  double thick_lo = 0, thick_hi = 0;
  bool has_thickness = false;
};

/// What the judges say about samples x[N,1,H,W].
struct Judgement {
  torch::Tensor digit;       // [N] int64 judge argmax (undefined without a digit judge)
  torch::Tensor confidence;  // [N] float  judge softmax max
  torch::Tensor thickness;   // [N] float  stroke thickness in pixels
  torch::Tensor thick_class; // [N] int64  0 thin, 1 medium, 2 thick
};
Judgement judge(const Judges& j, const torch::Tensor& x);

/// Does each sample satisfy the expression? [N] bool. Weights do not change
/// truth; NOT negates; OR is any; AND is all. Atoms the judges cannot decide
/// (model: atoms, unknown attributes) are a UsageError.
torch::Tensor satisfies(const Expr& e, const AttributeSet& attrs, const Judgement& j);
/// [N] bool for one atom.
torch::Tensor atom_satisfied(const std::string& atom, const AttributeSet& attrs, const Judgement& j);

/// Mean pairwise L2 distance between the rows of x[N,...] (N >= 2).
double mean_pairwise_l2(const torch::Tensor& x);

}  // namespace ebm

// ---------------------------------------------------------------- sampling and evaluation

namespace ebm {

/// The sampler composition uses: 200 steps, step 0.01 -> 0.001 and noise
/// 0.1 -> 0.002 (geometric), no gradient clip. Chains start near the data
/// (see ComposeSampleOptions::init_pool): from noise, short-run chains on the
/// score-matching prior collapse onto blank or blob images.
LangevinOptions composition_sampler();

struct ComposeSampleOptions {
  /// "auto" (annealed when the composed energy is noise-conditional, e.g. its
  /// prior is a conv-ebm-nc, else langevin) | "langevin" | "annealed".
  TORCH_ARG(std::string, sampler) = "auto";
  /// The one-temperature sampler's options (steps, step size, noise, grad clip, schedules).
  TORCH_ARG(LangevinOptions, langevin) = composition_sampler();
  /// The annealed sampler's options: every term is read at each level's sigma
  /// (noise-conditional terms use it, the others ignore it; compose.h).
  TORCH_ARG(AnnealedOptions, annealed) = image_annealed_sampler();
  /// Chains per sample; the one lowest in select_energy (default: the final
  /// sampled energy) is kept (1 = no restarts).
  TORCH_ARG(int64_t, restarts) = 2;
  /// The energy that picks among restarts; null = the sampled energy itself.
  /// Composition passes the expression alone (no prior, no guidance scale): the
  /// prior's energy spreads over hundreds of nats between images and would
  /// otherwise decide the choice, whatever the attributes say.
  TORCH_ARG(EnergyPtr, select_energy) = nullptr;
  /// Images per chain batch.
  TORCH_ARG(int64_t, batch) = 128;
  /// Chain starts: empty = uniform noise U(0,1); else random rows of this pool
  /// [M,1,28,28] (e.g. the training split) plus Gaussian noise of std init_noise,
  /// clipped: short-run chains started near the data (as CD and JEM's buffer do).
  TORCH_ARG(torch::Tensor, init_pool) = {};
  TORCH_ARG(double, init_noise) = 0.5;
  TORCH_ARG(uint64_t, seed) = 0;
};

struct ComposeSamples {
  torch::Tensor x;       // [N,1,28,28] in [0,1]
  torch::Tensor energy;  // [N] final sampled energy of the kept chain
  torch::Tensor select;  // [N] the selection energy of the kept chain (= energy without select_energy)
};

/// N samples of `e` by Langevin (one temperature or annealed, resolve_sampler)
/// from the starts described by `init_pool` [N,1,28,28].
/// `on_step(done, total)` reports progress in chain steps.
ComposeSamples compose_sample(Energy& e, int64_t n, const ComposeSampleOptions& o,
                              const std::function<void(int64_t, int64_t)>& on_step = {});

/// Judge samples of one expression: {"expr","n","success_rate","per_term":{atom: rate},
/// "judge_confidence","digit_histogram","thickness_histogram","diversity":{"samples",
/// "real","ratio","real_n"}}. `real` are real images (test split) for the diversity
/// reference: those the same judges find satisfying the expression (if fewer than 2,
/// "real" is null).
json judge_samples(const Expr& e, const AttributeSet& attrs, const Judges& j, const torch::Tensor& samples,
                   const torch::Tensor& real);

}  // namespace ebm
