// purify.cpp: purification = optional initial noise + the shared Langevin.
#include "ebm/defend/purify.h"

#include <torch/torch.h>

#include <vector>

#include "ebm/core/card_entry.h"
#include "ebm/core/common.h"

namespace ebm {

PurifyOptions purify_options_from_card(const nlohmann::json& card, PurifyOptions p, const std::set<std::string>& given) {
  CardEntry pc(card, "purify", given);
  take_chain_keys(pc, p);
  pc.take<double>("init_noise", [&](double v) { p.init_noise(v); });
  pc.take<int64_t>("draws", [&](int64_t v) { p.draws(v); });
  return p;
}

nlohmann::json purify_options_json(const PurifyOptions& p) {
  return {{"step_size", p.step_size()}, {"noise", p.noise()}, {"init_noise", p.init_noise()},
          {"step_schedule", p.step_schedule().str()}, {"noise_schedule", p.noise_schedule().str()},
          {"grad_clip", p.grad_clip()}, {"draws", p.draws()}};
}

void check_purify_options(const PurifyOptions& o) {
  if (o.steps() < 0) throw UsageError("purify steps must be >= 0, got " + std::to_string(o.steps()));
  if (!(o.step_size() >= 0)) throw UsageError("purify step size must be >= 0, got " + std::to_string(o.step_size()));
  if (!(o.noise() >= 0)) throw UsageError("purify noise must be >= 0, got " + std::to_string(o.noise()));
  if (!(o.init_noise() >= 0)) throw UsageError("purify initial noise must be >= 0, got " + std::to_string(o.init_noise()));
  if (o.draws() < 1) throw UsageError("purify draws must be >= 1, got " + std::to_string(o.draws()));
}

namespace {

// The start of one draw: x plus N(0, init_noise^2) noise, clamped to [0,1].
torch::Tensor purify_start(const torch::Tensor& x, const PurifyOptions& o, at::Generator& gen) {
  torch::NoGradGuard ng;
  auto x0 = x.detach();
  if (o.init_noise() > 0) x0 = (x0 + torch::randn(x.sizes(), gen, x.options()) * o.init_noise()).clamp(0.0, 1.0);
  return x0;
}

// The Langevin chain from x0 (any number of rows).
torch::Tensor purify_chain(Energy& ebm, const torch::Tensor& x0, const PurifyOptions& o, at::Generator& gen) {
  ebm.set_training(false);
  const auto lo = LangevinOptions()
                      .steps(o.steps())
                      .step_size(o.step_size())
                      .noise(o.noise())
                      .grad_clip(o.grad_clip())
                      .step_schedule(o.step_schedule())
                      .noise_schedule(o.noise_schedule())
                      .clamp(true);
  auto r = langevin(ebm, x0, lo, {}, &gen);
  if (r.diverged)
    throw DivergenceError("purification diverged (NaN/Inf energy or gradient) after " + std::to_string(r.steps_run) +
                          " steps; lower the step size");
  return r.x;
}

}  // namespace

torch::Tensor purify(Energy& ebm, const torch::Tensor& x, const PurifyOptions& o, at::Generator& gen) {
  check_purify_options(o);
  if (o.steps() == 0) return x.detach().clone();
  return purify_chain(ebm, purify_start(x, o, gen), o, gen);
}

torch::Tensor purified_logits(Energy& clf, Energy& ebm, const torch::Tensor& x, const PurifyOptions& o,
                              at::Generator& gen) {
  check_purify_options(o);
  clf.set_training(false);
  const int64_t draws = o.steps() == 0 ? 1 : o.draws();  // identity: every draw is the same
  if (draws > 1 && o.noise() == 0) {
    // A chain without Langevin noise draws its randomness at the start only.
    // The starts are drawn draw by draw, as the loop below draws them, and
    // every draw's chain then runs in one batch of draws * B rows (draw-major):
    // the same result at a batch where the kernels are several times faster.
    const int64_t b = x.size(0);
    std::vector<torch::Tensor> starts;
    for (int64_t k = 0; k < draws; ++k) starts.push_back(purify_start(x, o, gen));
    const auto xp = purify_chain(ebm, torch::cat(starts, 0), o, gen);
    torch::NoGradGuard ng;
    const auto z = clf.logits(xp);                  // [draws*B, K]
    auto sum = z.narrow(0, 0, b);
    for (int64_t k = 1; k < draws; ++k) sum = sum + z.narrow(0, k * b, b);  // the loop's order of additions
    return sum / double(draws);
  }
  torch::Tensor sum;
  for (int64_t k = 0; k < draws; ++k) {
    auto xp = purify(ebm, x, o, gen);
    torch::NoGradGuard ng;
    auto z = clf.logits(xp);
    sum = k ? sum + z : z;
  }
  return sum / double(draws);
}

}  // namespace ebm
