// attack_fgsm.cpp: the fast gradient sign method (Goodfellow et al. 2015).
#include <torch/torch.h>

#include "ebm/defend/attacks.h"
#include "ebm/core/common.h"

namespace ebm {

torch::Tensor fgsm(const AttackModel& m, const torch::Tensor& x, const torch::Tensor& y, const FgsmOptions& o) {
  if (!(o.eps() >= 0)) throw UsageError("FGSM eps must be >= 0, got " + std::to_string(o.eps()));
  const auto g = m.grad(x, y, nullptr);
  torch::NoGradGuard ng;
  // The projection only removes what the [0,1] box forbids (and float rounding
  // at the ball's edge); the step itself is exactly eps * sign(g).
  return project_linf(x + o.eps() * g.sign(), x, o.eps());
}

}  // namespace ebm
