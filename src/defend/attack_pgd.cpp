// attack_pgd.cpp: L-inf projected gradient descent (Madry et al. 2018) with
// random start and restarts; the same loop drives the adaptive BPDA+EOT
// attack (the AttackModel decides where the gradient comes from).
#include <torch/torch.h>

#include <limits>

#include "ebm/defend/attacks.h"
#include "ebm/core/common.h"

namespace ebm {

torch::Tensor pgd(const AttackModel& m, const torch::Tensor& x, const torch::Tensor& y, const PgdOptions& o) {
  if (!(o.eps() >= 0)) throw UsageError("PGD eps must be >= 0, got " + std::to_string(o.eps()));
  if (o.steps() < 0) throw UsageError("PGD steps must be >= 0, got " + std::to_string(o.steps()));
  if (!(o.step_size() >= 0)) throw UsageError("PGD step size must be >= 0, got " + std::to_string(o.step_size()));
  if (o.restarts() < 1) throw UsageError("PGD restarts must be >= 1, got " + std::to_string(o.restarts()));
  TORCH_CHECK(x.dim() == 4 && y.dim() == 1 && x.size(0) == y.size(0), "pgd: x [B,C,H,W] and y [B], got ",
              x.sizes(), " and ", y.sizes());
  const int64_t B = x.size(0);
  auto gen = at::detail::createCPUGenerator(o.seed());
  const auto bshape = std::vector<int64_t>{B, 1, 1, 1};

  torch::Tensor best = x.detach().clone();
  // Per example: the loss of the kept candidate, +inf once a misclassified
  // iterate was found (which is then never replaced).
  torch::Tensor best_score = torch::full({B}, -std::numeric_limits<float>::infinity());
  torch::Tensor fooled = torch::zeros({B}, torch::kBool);

  for (int64_t r = 0; r < o.restarts(); ++r) {
    torch::Tensor xa;
    {
      torch::NoGradGuard ng;
      xa = x.detach().clone();
      if (o.random_start() && o.eps() > 0)
        xa = project_linf(xa + (torch::rand(x.sizes(), gen, x.options()) * 2 - 1) * o.eps(), x, o.eps());
    }
    torch::Tensor z;
    for (int64_t t = 0; t <= o.steps(); ++t) {
      // One gradient evaluation per iterate: it also yields the logits that
      // judge the iterate; the last iterate (t == steps) is only judged.
      torch::Tensor g;
      if (t < o.steps()) {
        g = m.grad(xa, y, &z);
      } else {
        z = m.logits(xa);
      }
      torch::NoGradGuard ng;
      const auto wrong = z.argmax(1) != y;
      const auto newly = wrong & ~fooled;
      if (newly.any().item<bool>()) {
        best = torch::where(newly.view(bshape), xa, best);
        best_score = torch::where(newly, torch::full_like(best_score, std::numeric_limits<float>::infinity()), best_score);
        fooled = fooled | newly;
      }
      if (t == o.steps()) {
        // Not fooled in any run so far: keep the strongest final iterate.
        const auto loss = per_example_ce(z, y);
        const auto better = ~fooled & (loss > best_score);
        best = torch::where(better.view(bshape), xa, best);
        best_score = torch::where(better, loss, best_score);
        break;
      }
      if (fooled.all().item<bool>()) break;  // nothing left to attack
      xa = project_linf(xa + o.step_size() * g.sign(), x, o.eps());
    }
    if (fooled.all().item<bool>()) break;
  }
  return best;
}

}  // namespace ebm
