// attack_cw.cpp: Carlini-Wagner L2 (Carlini & Wagner 2017), untargeted, with
// the tanh change of variables, Adam and a per-example binary search over c.
#include <torch/torch.h>

#include <limits>

#include "ebm/defend/attacks.h"
#include "ebm/core/common.h"

namespace ebm {

torch::Tensor cw_l2(Energy& clf, const torch::Tensor& x, const torch::Tensor& y, const CwOptions& o) {
  if (clf.num_classes() <= 0) throw UsageError("CW needs a classifier; '" + clf.describe() + "' is an energy only");
  if (!(o.c() > 0)) throw UsageError("CW c must be > 0, got " + std::to_string(o.c()));
  if (!(o.confidence() >= 0)) throw UsageError("CW confidence must be >= 0, got " + std::to_string(o.confidence()));
  if (o.binary_search_steps() < 1) throw UsageError("CW binary-search steps must be >= 1, got " + std::to_string(o.binary_search_steps()));
  if (o.steps() < 1) throw UsageError("CW steps must be >= 1, got " + std::to_string(o.steps()));
  if (!(o.lr() > 0)) throw UsageError("CW lr must be > 0, got " + std::to_string(o.lr()));
  TORCH_CHECK(x.dim() == 4 && y.dim() == 1 && x.size(0) == y.size(0), "cw_l2: x [B,C,H,W] and y [B], got ",
              x.sizes(), " and ", y.sizes());
  clf.set_training(false);
  const int64_t B = x.size(0);
  const double inf = std::numeric_limits<double>::infinity();
  const auto bshape = std::vector<int64_t>{B, 1, 1, 1};
  const auto onehot = torch::one_hot(y, clf.num_classes()).to(torch::kBool);
  // atanh of pixels exactly 0 or 1 is infinite: shrink by 1e-6 first.
  const auto w0 = torch::atanh((x.detach() * 2 - 1) * (1 - 1e-6));

  torch::Tensor best = x.detach().clone();
  torch::Tensor best_l2 = torch::full({B}, inf, x.options().dtype(torch::kDouble));
  torch::Tensor c = torch::full({B}, o.c(), torch::kDouble);
  torch::Tensor lower = torch::zeros({B}, torch::kDouble), upper = torch::full({B}, inf, torch::kDouble);

  for (int64_t round = 0; round < o.binary_search_steps(); ++round) {
    auto w = w0.clone().requires_grad_(true);
    torch::optim::Adam adam({w}, torch::optim::AdamOptions(o.lr()));
    torch::Tensor success_round = torch::zeros({B}, torch::kBool);
    const auto cf = c.to(torch::kFloat);
    for (int64_t t = 0; t < o.steps(); ++t) {
      torch::AutoGradMode on(true);
      auto xa = (torch::tanh(w) + 1) / 2;
      auto l2 = (xa - x).pow(2).flatten(1).sum(1);
      auto z = clf.logits(xa);
      auto real = z.masked_select(onehot).view({B});
      auto other = z.masked_fill(onehot, -1e9).amax(1);
      // f = max(Z_y - max_{j!=y} Z_j, -kappa): zero gain once the margin is kappa.
      auto f = torch::clamp_min(real - other, -o.confidence());
      auto loss = (l2 + cf * f).sum();
      adam.zero_grad();
      loss.backward();
      adam.step();
      torch::NoGradGuard ng;
      // Success at this iterate (judged before the step just taken).
      const auto ok = ((other - real) >= o.confidence() - 1e-12) & (z.argmax(1) != y);
      const auto l2d = l2.detach().to(torch::kDouble);
      const auto better = ok & (l2d < best_l2);
      best = torch::where(better.view(bshape), xa.detach(), best);
      best_l2 = torch::where(better, l2d, best_l2);
      success_round = success_round | ok;
    }
    // Binary search on c, per example: success -> try a smaller c; failure ->
    // a larger one (x10 until some c succeeds, then bisect).
    upper = torch::where(success_round, torch::min(upper, c), upper);
    lower = torch::where(success_round, lower, torch::max(lower, c));
    const auto bracketed = upper < inf;
    c = torch::where(bracketed, (lower + torch::where(bracketed, upper, c)) / 2, c * 10);
  }
  return best;
}

}  // namespace ebm
