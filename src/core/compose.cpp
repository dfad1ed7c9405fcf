#include "ebm/core/compose.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "ebm/core/common.h"

namespace ebm {

SumEnergy::SumEnergy(std::vector<Term> terms) : terms_(std::move(terms)) {
  TORCH_CHECK(!terms_.empty(), "SumEnergy needs at least one term");
  for (auto& t : terms_) TORCH_CHECK(t.energy, "SumEnergy: null term");
}

namespace {
// The terms' energies, sigma-blind (sigma undefined) or at sigma [B].
torch::Tensor term_energy(Energy& e, const torch::Tensor& x, const torch::Tensor& sigma) {
  return sigma.defined() ? e.energy_at(x, sigma) : e.energy(x);
}
}  // namespace

torch::Tensor SumEnergy::energy(const torch::Tensor& x) { return energy_at(x, {}); }

torch::Tensor SumEnergy::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  torch::Tensor total;
  for (auto& t : terms_) {
    auto e = term_energy(*t.energy, x, sigma) * t.weight;
    total = total.defined() ? total + e : e;
  }
  return total;
}

bool SumEnergy::noise_conditional() const {
  for (auto& t : terms_)
    if (t.energy->noise_conditional()) return true;
  return false;
}

bool SumEnergy::rows_independent() const {
  for (auto& t : terms_)
    if (!t.energy->rows_independent()) return false;
  return true;
}

std::string SumEnergy::describe() const {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < terms_.size(); ++i)
    s << (i ? " + " : "") << terms_[i].weight << "*" << terms_[i].energy->describe();
  s << ")";
  return s.str();
}

OrEnergy::OrEnergy(std::vector<EnergyPtr> terms, double temperature)
    : terms_(std::move(terms)), s_(temperature) {
  TORCH_CHECK(!terms_.empty(), "OrEnergy needs at least one term");
  if (!(temperature > 0)) throw UsageError("OR temperature must be > 0, got " + std::to_string(temperature));
}

torch::Tensor OrEnergy::energy(const torch::Tensor& x) { return energy_at(x, {}); }

torch::Tensor OrEnergy::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  std::vector<torch::Tensor> es;
  for (auto& t : terms_) es.push_back(term_energy(*t, x, sigma));
  return -torch::logsumexp(torch::stack(es, 1) * (-s_), 1) / s_;
}

bool OrEnergy::noise_conditional() const {
  for (auto& t : terms_)
    if (t->noise_conditional()) return true;
  return false;
}

bool OrEnergy::rows_independent() const {
  for (auto& t : terms_)
    if (!t->rows_independent()) return false;
  return true;
}

std::string OrEnergy::describe() const {
  std::ostringstream s;
  s << "or[s=" << s_ << "](";
  for (size_t i = 0; i < terms_.size(); ++i) s << (i ? ", " : "") << terms_[i]->describe();
  s << ")";
  return s.str();
}

AffineEnergy::AffineEnergy(EnergyPtr inner, double shift, double scale)
    : inner_(std::move(inner)), shift_(shift), scale_(scale) {
  if (!(scale > 0)) throw UsageError("energy calibration scale must be > 0, got " + std::to_string(scale));
}

torch::Tensor AffineEnergy::energy(const torch::Tensor& x) { return (inner_->energy(x) - shift_) / scale_; }

torch::Tensor AffineEnergy::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  return (inner_->energy_at(x, sigma) - shift_) / scale_;
}

std::string AffineEnergy::describe() const {
  std::ostringstream s;
  s << "(" << inner_->describe() << " - " << shift_ << ")/" << scale_;
  return s.str();
}

DenoisedGuidanceEnergy::DenoisedGuidanceEnergy(EnergyPtr inner, EnergyPtr denoiser, double prior_weight)
    : inner_(std::move(inner)), denoiser_(std::move(denoiser)), prior_weight_(prior_weight) {
  TORCH_CHECK(inner_ && denoiser_, "DenoisedGuidanceEnergy: null energy");
  TORCH_CHECK(std::isfinite(prior_weight), "DenoisedGuidanceEnergy: prior_weight must be finite, got ", prior_weight);
}

torch::Tensor DenoisedGuidanceEnergy::energy(const torch::Tensor& x) {
  auto e = inner_->energy(x);
  return prior_weight_ == 0 ? e : e + prior_weight_ * denoiser_->energy(x);
}

torch::Tensor DenoisedGuidanceEnergy::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  TORCH_CHECK(sigma.dim() == 1 && sigma.size(0) == x.size(0), "DenoisedGuidanceEnergy: sigma must be [B], got ",
              sigma.sizes());
  torch::Tensor x_hat, d, g;  // [B,C,H,W], [B], [B,C,H,W]
  {
    // A separate graph, even when the caller has autograd off (scoring).
    torch::AutoGradMode on(true);
    const auto xd = x.detach().requires_grad_(true);
    d = denoiser_->energy_at(xd, sigma);
    g = torch::autograd::grad({d.sum()}, {xd})[0];
    const auto s2 = sigma.to(x.dtype()).pow(2).view({-1, 1, 1, 1});
    x_hat = (xd - s2 * g).detach().clamp(0, 1);
  }
  // Straight-through: the value of inner at x_hat, the gradient of inner at x_hat.
  auto e = inner_->energy(x_hat + (x - x.detach()));
  if (prior_weight_ == 0) return e;
  // The prior term: value D(x, sigma), input gradient g, from the pass above.
  const auto linear = (g * (x - x.detach())).flatten(1).sum(1);
  return e + prior_weight_ * (d.detach() + linear);
}

std::string DenoisedGuidanceEnergy::describe() const {
  std::ostringstream s;
  s << inner_->describe() << " on the Tweedie estimate of " << denoiser_->describe();
  if (prior_weight_ != 0) s << " + " << prior_weight_ << " * " << denoiser_->describe();
  return s.str();
}

ClassEnergy::ClassEnergy(EnergyPtr classifier, int64_t cls, bool nll, double temperature)
    : clf_(std::move(classifier)), cls_(cls), nll_(nll), t_(temperature) {
  if (!(temperature > 0)) throw UsageError("class-energy temperature must be > 0, got " + std::to_string(temperature));
  const int64_t k = clf_->num_classes();
  if (cls < 0 || cls >= k)
    throw UsageError("class " + std::to_string(cls) + " out of range for a " + std::to_string(k) +
                     "-class model");
}

torch::Tensor ClassEnergy::energy(const torch::Tensor& x) {
  const auto l = clf_->logits(x) / t_;
  return nll_ ? -torch::log_softmax(l, 1).select(1, cls_) : -l.select(1, cls_);
}

std::string ClassEnergy::describe() const {
  std::ostringstream s;
  s << clf_->describe() << (nll_ ? "[-log p(class " : "[-logit(class ") << cls_ << (nll_ ? "|x)" : ")");
  if (t_ != 1.0) s << ", T=" << t_;
  s << "]";
  return s.str();
}

EnergyPtr make_and(std::vector<EnergyPtr> terms) {
  std::vector<SumEnergy::Term> t;
  for (auto& e : terms) t.push_back({1.0, e});
  return std::make_shared<SumEnergy>(std::move(t));
}

EnergyPtr make_not(EnergyPtr positive, EnergyPtr negative, double alpha) {
  return std::make_shared<SumEnergy>(std::vector<SumEnergy::Term>{{1.0, positive}, {-alpha, negative}});
}

EnergyPtr make_or(std::vector<EnergyPtr> terms, double temperature) {
  return std::make_shared<OrEnergy>(std::move(terms), temperature);
}

}  // namespace ebm
