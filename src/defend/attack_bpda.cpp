// attack_bpda.cpp: BPDA+EOT (Athalye et al. 2018), the adaptive attack on a
// stochastic, non-differentiable (or too costly to differentiate) purifier.
#include <torch/torch.h>

#include <memory>

#include "ebm/defend/attacks.h"
#include "ebm/core/common.h"

namespace ebm {

AttackModel bpda_eot_model(Energy& clf, Transform transform, int64_t eot_samples, uint64_t seed) {
  if (eot_samples < 1) throw UsageError("EOT samples must be >= 1, got " + std::to_string(eot_samples));
  if (clf.num_classes() <= 0)
    throw UsageError("BPDA+EOT needs a classifier; '" + clf.describe() + "' is an energy only");
  // The white-box classifier gives the gradient at the purified point; the
  // purifier's own Jacobian is replaced by the identity (BPDA): the purifier
  // approximates the identity on clean data, which is what makes this sound.
  auto inner = std::make_shared<AttackModel>(classifier_model(clf));
  // One generator shared by grad() and logits() and advanced across calls:
  // every draw is fresh, and the whole attack is reproducible from `seed`.
  auto gen = std::make_shared<at::Generator>(at::detail::createCPUGenerator(seed));
  AttackModel m;
  m.grad = [inner, transform, eot_samples, gen](const torch::Tensor& x, const torch::Tensor& y, torch::Tensor* logits) {
    torch::Tensor g_sum, z_sum;
    for (int64_t k = 0; k < eot_samples; ++k) {
      torch::Tensor xp;
      {
        torch::NoGradGuard ng;
        xp = transform(x.detach(), *gen);
      }
      torch::Tensor z;
      auto g = inner->grad(xp, y, &z);
      g_sum = k ? g_sum + g : g;
      z_sum = k ? z_sum + z : z;
    }
    if (logits) *logits = z_sum / double(eot_samples);
    return g_sum / double(eot_samples);
  };
  m.logits = [inner, transform, eot_samples, gen](const torch::Tensor& x) {
    torch::NoGradGuard ng;
    torch::Tensor z_sum;
    for (int64_t k = 0; k < eot_samples; ++k) {
      auto z = inner->logits(transform(x, *gen));
      z_sum = k ? z_sum + z : z;
    }
    return z_sum / double(eot_samples);
  };
  return m;
}

}  // namespace ebm
