// energy.h: the one interface every application uses.
//
//   Energy:  x[B,C,H,W] (float32, pixels in [0,1]) -> e[B] (float32)
//
// Low energy = likely / in-distribution. An Energy may also be a classifier
// (logits [B,K]); then its energy is the free energy -T*logsumexp(logits/T).
// Implementations: nn models (models.h), TorchScript files (models.h),
// compositions of other energies (compose.h), and the analytic energies below.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ebm {

class Energy {
 public:
  virtual ~Energy() = default;

  /// x: [B,C,H,W] -> [B]. Differentiable with respect to x.
  virtual torch::Tensor energy(const torch::Tensor& x) = 0;

  /// The energy of the data density blurred by N(0, sigma^2 I) (annealed.h):
  /// x [B,C,H,W], sigma [B] > 0 -> [B], differentiable in x. Noise-conditional
  /// models use sigma; every other energy ignores it (sigma-blind), which is
  /// this default. Compositions pass sigma to every term (compose.h).
  virtual torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& /*sigma*/) { return energy(x); }
  /// True when energy_at() depends on sigma. Then energy(x) is the energy at the
  /// model's smallest trained noise level.
  virtual bool noise_conditional() const { return false; }
  /// x: [B,C,H,W] -> [B,K] logits for classifier energies; undefined tensor otherwise.
  virtual torch::Tensor logits(const torch::Tensor& x) { return {}; }

  /// K for classifiers, 0 otherwise.
  virtual int64_t num_classes() const { return 0; }

  /// Penultimate features [B,D] of a classifier whose logits are a linear head
  /// on them (logits = features W^T + b, see linear_head()); undefined tensor
  /// for energies without one. Used by the post-hoc OOD detectors (ood/posthoc.h).
  virtual torch::Tensor features(const torch::Tensor& x) { return {}; }

  /// The linear head {W [K,D], b [K]} that maps features() to logits();
  /// undefined tensors for energies without one.
  virtual std::pair<torch::Tensor, torch::Tensor> linear_head() const { return {}; }

  /// Short human-readable description, e.g. "conv-ebm(width=32)".
  virtual std::string describe() const = 0;

  /// Trainable parameters (empty for analytic or frozen energies).
  virtual std::vector<torch::Tensor> parameters() { return {}; }

  /// Train/eval mode switch for models that care (dropout); default no-op.
  virtual void set_training(bool on) {}

  /// True when energy(x)[i] and energy_at(x, sigma)[i] depend on row i alone
  /// and deterministically, and energy() may run on two threads at once:
  /// eval-mode models, analytic energies, and compositions of such energies.
  /// energy_grad() then splits batches across threads (parallel.h).
  /// Default false: an energy that draws random numbers, keeps state, or
  /// mixes rows (batch statistics) is always evaluated whole.
  virtual bool rows_independent() const { return false; }

  /// The model card: the metadata that travels with the weights (task, data,
  /// tuned sampler settings, metrics, ...). load_model() fills it for every
  /// format; energies built in code start with an empty object.
  const nlohmann::json& card() const { return card_; }
  void set_card(nlohmann::json card) { card_ = std::move(card); }

 private:
  nlohmann::json card_ = nlohmann::json::object();
};

using EnergyPtr = std::shared_ptr<Energy>;

/// E(., sigma) of another energy as an ordinary Energy: energy(x) =
/// inner.energy_at(x, sigma for every row). Lets langevin(), tweedie_step()
/// and energy_grad() run at one noise level. Holds a reference: `inner` must
/// outlive it.
class EnergyAtSigma : public Energy {
 public:
  EnergyAtSigma(Energy& inner, double sigma);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override {
    return inner_.energy_at(x, sigma);
  }
  bool noise_conditional() const override { return inner_.noise_conditional(); }
  bool rows_independent() const override { return inner_.rows_independent(); }
  std::string describe() const override;

 private:
  Energy& inner_;
  double sigma_;
};

/// Free energy of logits: [B,K] -> [B], -T*logsumexp(logits/T, dim=1). T > 0.
torch::Tensor free_energy(const torch::Tensor& logits, double temperature = 1.0);

/// grad_x E(x) for x[B,C,H,W] -> [B,C,H,W], with no parameter gradients
/// accumulated and no graph kept. If `energy_out` is given it receives E(x) [B]
/// (detached). How it uses the cores (parallel.h): 2 or more rows of a
/// rows_independent() energy are split into one shard per intra-op thread,
/// each on its own core in passes of at most kShardPassRows rows; an energy
/// that cannot be split runs whole, up to kSerialMaxRows rows on the calling
/// thread alone and larger batches on its intra-op threads.
torch::Tensor energy_grad(Energy& e, const torch::Tensor& x, torch::Tensor* energy_out = nullptr);

/// Images per forward pass when scoring many images (OOD scores, ensembles,
/// detectors): large enough to amortise per-call overhead on 28x28 inputs,
/// small enough to keep activations of the shipped architectures in cache.
inline constexpr int64_t kScoringBatch = 256;

/// The one batched no-grad loop: f applied to x[N,...] in slices of at most
/// `batch` rows along dim 0, with autograd off, results concatenated along
/// dim 0. f maps [b,...] -> [b,...]. N = 0 gives an empty [0] tensor. Slices
/// of at most kSerialMaxRows rows run on the calling thread alone (parallel.h).
torch::Tensor map_batched(const torch::Tensor& x, int64_t batch,
                          const std::function<torch::Tensor(const torch::Tensor&)>& f);

/// Energy evaluated in batches without autograd: x[N,C,H,W] -> [N].
torch::Tensor energy_batched(Energy& e, const torch::Tensor& x, int64_t batch = kScoringBatch);

/// Analytic isotropic Gaussian: E(x) = ||x - mu||^2 / (2 sigma^2), summed over
/// C,H,W. mu: [C,H,W] (or broadcastable). Its Boltzmann density is N(mu, sigma^2 I),
/// which makes it the oracle for sampler tests.
class GaussianEnergy : public Energy {
 public:
  GaussianEnergy(torch::Tensor mu, double sigma);
  torch::Tensor energy(const torch::Tensor& x) override;
  bool rows_independent() const override { return true; }
  std::string describe() const override;

 private:
  torch::Tensor mu_;
  double sigma_;
};

}  // namespace ebm
