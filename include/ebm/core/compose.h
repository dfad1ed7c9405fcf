// compose.h: the energy algebra. Every composition is itself an Energy, so
// compositions nest and every application can use them unchanged.
//
//   AND  E = sum_i w_i E_i                  (product of experts)
//   NOT  E = E_pos - alpha * E_neg          (a negative weight in a sum)
//   OR   E = -logsumexp(-s * E_i) / s       (mixture; s = temperature)
//   Affine  E' = (E - shift) / scale        (calibration to comparable scales)
#pragma once

#include "ebm/core/energy.h"

namespace ebm {

/// Weighted sum of energies: AND, and NOT via negative weights. Every
/// composite applies its rule level by level: energy_at(x, sigma) combines the
/// terms' energy_at(x, sigma), and the composite is noise-conditional when any
/// term is.
class SumEnergy : public Energy {
 public:
  struct Term {
    double weight;
    EnergyPtr energy;
  };
  explicit SumEnergy(std::vector<Term> terms);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  bool noise_conditional() const override;
  bool rows_independent() const override;
  std::string describe() const override;
  const std::vector<Term>& terms() const { return terms_; }

 private:
  std::vector<Term> terms_;
};

/// Soft minimum of energies: -logsumexp(-s*E_i)/s. As s -> inf it is min_i E_i.
class OrEnergy : public Energy {
 public:
  OrEnergy(std::vector<EnergyPtr> terms, double temperature);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  bool noise_conditional() const override;
  bool rows_independent() const override;
  std::string describe() const override;

 private:
  std::vector<EnergyPtr> terms_;
  double s_;
};

/// (E(x) - shift) / scale: puts energies of different models on one scale.
class AffineEnergy : public Energy {
 public:
  AffineEnergy(EnergyPtr inner, double shift, double scale);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  bool noise_conditional() const override { return inner_->noise_conditional(); }
  bool rows_independent() const override { return inner_->rows_independent(); }
  std::string describe() const override;

 private:
  EnergyPtr inner_;
  double shift_, scale_;
};

/// Guidance read on the denoised image ("forward" / universal guidance, Bansal
/// et al. 2023; the Tweedie estimate of DPS, Chung et al. 2023, with the
/// denoiser's Jacobian taken as the identity). At level sigma:
///   x_hat = clamp(x - sigma^2 grad_x D(x, sigma), 0, 1)   (D = denoiser, tweedie.h)
///   E(x, sigma) = inner(x_hat + (x - stop_grad(x)))
/// so grad_x E(x, sigma) = grad inner at x_hat: a classifier trained on clean
/// images guides a chain at every noise level by what the chain will become,
/// not by the noisy pixels it cannot read. Costs one more denoiser gradient
/// per evaluation. energy(x), without a level, is inner(x). Noise-conditional.
///
/// With prior_weight w != 0 the denoiser is also a term of the energy:
///   E(x, sigma) = inner(x_hat + (x - stop_grad(x))) + w D(x, sigma)
/// and the term's gradient is the one the Tweedie estimate already computed,
/// so a guided prior costs one denoiser pass per step, not two. Same value and
/// input gradient as SumEnergy{{w, denoiser}, {1, DenoisedGuidanceEnergy(inner,
/// denoiser)}} (tested); the term carries no parameter gradients: it is for
/// sampling, not for training.
class DenoisedGuidanceEnergy : public Energy {
 public:
  DenoisedGuidanceEnergy(EnergyPtr inner, EnergyPtr denoiser, double prior_weight = 0.0);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  bool noise_conditional() const override { return true; }
  bool rows_independent() const override { return inner_->rows_independent() && denoiser_->rows_independent(); }
  std::string describe() const override;

 private:
  EnergyPtr inner_, denoiser_;
  double prior_weight_;
};

/// Class-conditional energy of a classifier, in one of two readings:
///   logit: E(x|c) = -logits(x)[c] / T          (JEM's E(x,y) = -f(x)[y])
///   nll:   E(x|c) = -log softmax(logits(x)/T)[c] = -log p(c|x)
/// The nll reading is the energy of the attribute given the image; adding an
/// unconditional prior E(x) gives -log p(x|c) up to a constant (Bayes), and its
/// scale is calibrated by the temperature T (temperature scaling, Guo et al.
/// 2017). The classifier must have num_classes() > c; T > 0.
class ClassEnergy : public Energy {
 public:
  ClassEnergy(EnergyPtr classifier, int64_t cls, bool nll = false, double temperature = 1.0);
  torch::Tensor energy(const torch::Tensor& x) override;
  bool rows_independent() const override { return clf_->rows_independent(); }
  std::string describe() const override;

 private:
  EnergyPtr clf_;
  int64_t cls_;
  bool nll_;
  double t_;
};

// Convenience builders.
EnergyPtr make_and(std::vector<EnergyPtr> terms);
EnergyPtr make_not(EnergyPtr positive, EnergyPtr negative, double alpha);
EnergyPtr make_or(std::vector<EnergyPtr> terms, double temperature);

}  // namespace ebm
