#include "ebm/core/tweedie.h"

#include <torch/torch.h>

#include <cmath>

#include "ebm/core/common.h"

namespace ebm {

torch::Tensor tweedie_step(Energy& e, const torch::Tensor& z, double sigma, bool clamp) {
  EnergyAtSigma at(e, sigma);  // a noise-conditional energy at this level; any other unchanged
  const auto g = energy_grad(at, z);
  if (!torch::isfinite(g).all().item<bool>())
    throw DivergenceError("Tweedie step at sigma " + std::to_string(sigma) + ": the energy gradient is not finite");
  const auto x = (z - sigma * sigma * g).detach();
  return clamp ? x.clamp(0, 1) : x;
}

void check_tweedie_options(const TweedieOptions& o) {
  if (!(o.sigma_min() > 0 && o.sigma_max() > o.sigma_min()))
    throw UsageError("the tweedie sampler needs sigma_max > sigma_min > 0, got sigma_max " +
                     std::to_string(o.sigma_max()) + ", sigma_min " + std::to_string(o.sigma_min()));
  if (o.levels() < 2) throw UsageError("the tweedie sampler needs levels >= 2, got " + std::to_string(o.levels()));
  if (o.repeats() < 1) throw UsageError("the tweedie sampler needs repeats >= 1, got " + std::to_string(o.repeats()));
}

torch::Tensor tweedie_sample(Energy& e, const torch::Tensor& x0, const TweedieOptions& o, at::Generator& gen,
                             const torch::Tensor& known_mask, const std::function<void(int64_t, int64_t)>& on_step) {
  check_tweedie_options(o);
  const bool frozen = known_mask.defined();
  const auto k = frozen ? (known_mask != 0).expand_as(x0) : torch::Tensor();
  const int64_t total = o.levels() * o.repeats();
  auto x = x0;
  for (int64_t l = 0; l < o.levels(); ++l) {
    const double s = o.sigma_max() * std::pow(o.sigma_min() / o.sigma_max(), double(l) / double(o.levels() - 1));
    for (int64_t r = 0; r < o.repeats(); ++r) {
      const auto z = x + s * torch::randn(x.sizes(), gen);
      x = tweedie_step(e, z, s);
      if (frozen) x = torch::where(k, x0, x);
      if (on_step) on_step(l * o.repeats() + r + 1, total);
    }
  }
  return x;
}

}  // namespace ebm
