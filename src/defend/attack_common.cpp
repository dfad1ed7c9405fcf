// attack_common.cpp: what every attack shares: the white-box attack model,
// the exact L-inf projection and the per-example loss.
#include <torch/torch.h>

#include "ebm/defend/attacks.h"
#include "ebm/core/common.h"

namespace ebm {

torch::Tensor per_example_ce(const torch::Tensor& logits, const torch::Tensor& y) {
  TORCH_CHECK(logits.dim() == 2 && y.dim() == 1 && logits.size(0) == y.size(0),
              "per_example_ce: logits [B,K] and y [B], got ", logits.sizes(), " and ", y.sizes());
  return torch::nn::functional::cross_entropy(
      logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
}

torch::Tensor project_linf(const torch::Tensor& x_adv, const torch::Tensor& x, double eps) {
  // Ball first, then box: both are elementwise intervals, so clamping to one
  // and then the other is the exact projection onto their intersection
  // (x itself is in [0,1], so the intersection is never empty).
  return torch::max(torch::min(x_adv, x + eps), x - eps).clamp(0.0, 1.0);
}

AttackModel classifier_model(Energy& clf) {
  if (clf.num_classes() <= 0)
    throw UsageError("attacks need a classifier (logits [B,K]); '" + clf.describe() + "' is an energy only");
  clf.set_training(false);
  AttackModel m;
  Energy* c = &clf;
  m.grad = [c](const torch::Tensor& x, const torch::Tensor& y, torch::Tensor* logits) {
    // Gradients on, whatever the caller's mode (attack loops run under NoGradGuard).
    torch::AutoGradMode on(true);
    auto xg = x.detach().requires_grad_(true);
    auto z = c->logits(xg);
    auto loss = per_example_ce(z, y).sum();
    auto g = torch::autograd::grad({loss}, {xg})[0];
    if (logits) *logits = z.detach();
    return g;
  };
  m.logits = [c](const torch::Tensor& x) {
    torch::NoGradGuard ng;
    return c->logits(x);
  };
  return m;
}

}  // namespace ebm
