// annealed.cpp: annealed Langevin with ULA and MALA correctors (annealed.h).
#include "ebm/core/annealed.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/langevin.h"
#include "ebm/core/tweedie.h"

namespace ebm {

torch::Tensor GaussianNoiseConditional::energy(const torch::Tensor& x) {
  return (x - mu_).pow(2).flatten(1).sum(1) / (2.0 * s_ * s_);
}

torch::Tensor GaussianNoiseConditional::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  TORCH_CHECK(sigma.dim() == 1 && sigma.size(0) == x.size(0), "GaussianNoiseConditional: sigma must be [B], got ",
              sigma.sizes());
  const auto var = sigma.to(x.dtype()).pow(2) + s_ * s_;
  return (x - mu_).pow(2).flatten(1).sum(1) / (2.0 * var);
}

std::string GaussianNoiseConditional::describe() const {
  std::ostringstream s;
  s << "gaussian-noise-conditional(s=" << s_ << ")";
  return s.str();
}

AnnealedOptions image_annealed_sampler() {
  return AnnealedOptions().sigma_max(1.0).sigma_min(0.01).levels(10).steps_per_level(20).epsilon(2e-5).corrector("ula");
}

void take_annealed_keys(CardEntry& entry, AnnealedOptions& o) {
  const size_t before = entry.applied().size();
  entry.take<double>("sigma_max", [&](double v) { o.sigma_max(v); });
  entry.take<double>("sigma_min", [&](double v) { o.sigma_min(v); });
  entry.take<int64_t>("levels", [&](int64_t v) { o.levels(v); });
  entry.take<int64_t>("steps_per_level", [&](int64_t v) { o.steps_per_level(v); });
  entry.take<double>("epsilon", [&](double v) { o.epsilon(v); });
  entry.take<std::string>("corrector", [&](const std::string& v) { o.corrector(v); });
  if (entry.applied().size() == before) return;  // nothing from the card: the caller's values, checked where used
  try {
    check_annealed_options(o);
  } catch (const UsageError& e) {
    throw DataError("model card: \"" + entry.name() + "\": " + e.what());
  }
}

std::string resolve_sampler(const std::string& sampler, bool noise_conditional) {
  if (sampler == "auto") return noise_conditional ? "annealed" : "langevin";
  if (sampler == "langevin" || sampler == "annealed") return sampler;
  throw UsageError("unknown sampler '" + sampler + "' (use auto, langevin or annealed)");
}

double annealed_sigma(const AnnealedOptions& o, int64_t level) {
  if (o.levels() <= 1) return o.sigma_min();
  return o.sigma_max() * std::pow(o.sigma_min() / o.sigma_max(), double(level) / double(o.levels() - 1));
}

void check_annealed_options(const AnnealedOptions& o) {
  if (!(o.sigma_min() > 0) || !std::isfinite(o.sigma_min()))
    throw UsageError("sigma_min must be a finite number > 0, got " + std::to_string(o.sigma_min()));
  if (!(o.sigma_max() > o.sigma_min()) || !std::isfinite(o.sigma_max()))
    throw UsageError("sigma_max must be finite and > sigma_min (" + std::to_string(o.sigma_min()) + "), got " +
                     std::to_string(o.sigma_max()));
  if (o.levels() < 1) throw UsageError("levels must be >= 1, got " + std::to_string(o.levels()));
  if (o.steps_per_level() < 1)
    throw UsageError("steps per level must be >= 1, got " + std::to_string(o.steps_per_level()));
  if (!(o.epsilon() > 0) || !std::isfinite(o.epsilon()))
    throw UsageError("epsilon must be a finite number > 0, got " + std::to_string(o.epsilon()));
  if (o.corrector() != "ula" && o.corrector() != "mala")
    throw UsageError("corrector must be ula or mala, got '" + o.corrector() + "'");
}

namespace {

// Per-row squared norm: [B,...] -> [B].
torch::Tensor sqnorm(const torch::Tensor& t) { return t.pow(2).flatten(1).sum(1); }

void check_finite(const torch::Tensor& e, const torch::Tensor& g, double sigma) {
  if (!torch::isfinite(e).all().item<bool>() || !torch::isfinite(g).all().item<bool>())
    throw DivergenceError("annealed Langevin diverged at sigma " + std::to_string(sigma) +
                          " (NaN/Inf energy or gradient); lower epsilon");
}

}  // namespace

AnnealedResult annealed_langevin(Energy& e, const torch::Tensor& x0, const AnnealedOptions& o,
                                 at::Generator* gen, const std::function<void(int64_t, int64_t)>& on_level) {
  check_annealed_options(o);
  TORCH_CHECK(x0.dim() >= 2, "annealed_langevin: x0 must be [B,...], got ", x0.sizes());
  at::Generator own;
  if (!gen) {
    own = at::detail::createCPUGenerator(o.seed());
    gen = &own;
  }
  AnnealedResult r;
  torch::Tensor x = x0.detach().clone();
  const int64_t b = x.size(0);
  int64_t accepted_total = 0, proposed_total = 0;
  for (int64_t i = 0; i < o.levels(); ++i) {
    const double sigma = annealed_sigma(o, i);
    const double alpha = o.epsilon() * sigma * sigma / (o.sigma_min() * o.sigma_min());
    r.sigmas.push_back(sigma);
    EnergyAtSigma level(e, sigma);
    if (o.corrector() == "ula") {
      // The unadjusted corrector is exactly langevin() with noise sqrt(2 alpha).
      LangevinOptions lo;
      lo.steps(o.steps_per_level()).step_size(alpha).noise(std::sqrt(2.0 * alpha)).clamp(o.clamp());
      const auto lr = langevin(level, x, lo, {}, gen);
      if (lr.diverged) throw DivergenceError("annealed Langevin diverged at sigma " + std::to_string(sigma) +
                                             " (NaN/Inf energy or gradient); lower epsilon");
      x = lr.x;
      r.acceptance.push_back(1.0);
    } else {
      int64_t accepted = 0;
      torch::Tensor ex;
      torch::Tensor gx = energy_grad(level, x, &ex);
      check_finite(ex, gx, sigma);
      for (int64_t k = 0; k < o.steps_per_level(); ++k) {
        torch::NoGradGuard ng;
        auto y = x - alpha * gx + std::sqrt(2.0 * alpha) * torch::randn(x.sizes(), *gen, x.options());
        if (o.clamp()) y = y.clamp(0, 1);
        torch::Tensor ey;
        const torch::Tensor gy = energy_grad(level, y, &ey);  // turns autograd on itself
        check_finite(ey, gy, sigma);
        // log q(x|y) - log q(y|x) for the Gaussian proposals, and the energy difference.
        // In float64: the two squared norms are large and nearly equal in high dimension.
        const auto xd = x.to(torch::kFloat64), yd = y.to(torch::kFloat64);
        const auto log_a = (ex.to(torch::kFloat64) - ey.to(torch::kFloat64)) -
                           (sqnorm(xd - yd + alpha * gy.to(torch::kFloat64)) -
                            sqnorm(yd - xd + alpha * gx.to(torch::kFloat64))) /
                               (4.0 * alpha);
        const auto u = torch::rand({b}, *gen, torch::TensorOptions().dtype(torch::kFloat64));
        const auto accept = u.log() < log_a;  // [B]; log u < log a  <=>  u < min(1, a)
        const auto view = accept.view([&] {
          std::vector<int64_t> s(size_t(x.dim()), 1);
          s[0] = b;
          return s;
        }());
        x = torch::where(view, y, x);
        gx = torch::where(view, gy, gx);
        ex = torch::where(accept, ey, ex);
        accepted += accept.sum().item<int64_t>();
      }
      r.acceptance.push_back(double(accepted) / double(b * o.steps_per_level()));
      accepted_total += accepted;
      proposed_total += b * o.steps_per_level();
      r.energy_evaluations += 1;  // the level's first gradient
    }
    r.energy_evaluations += o.steps_per_level();
    if (on_level) on_level(i + 1, o.levels());
  }
  if (proposed_total > 0) r.acceptance_rate = double(accepted_total) / double(proposed_total);
  if (o.tweedie_end()) {
    x = tweedie_step(e, x, o.sigma_min(), o.clamp());
    r.energy_evaluations += 1;
  }
  r.x = x;
  return r;
}

}  // namespace ebm
