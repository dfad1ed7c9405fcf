#include "ebm/core/langevin.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "ebm/core/common.h"

namespace ebm {

double Schedule::factor(int64_t t, int64_t total) const {
  if (kind == kConstant || total <= 1) return kind == kConstant ? 1.0 : (t == 0 ? 1.0 : end_factor);
  const double f = double(t) / double(total - 1);
  switch (kind) {
    case kLinear: return 1.0 + (end_factor - 1.0) * f;
    case kCosine: return end_factor + (1.0 - end_factor) * 0.5 * (1.0 + std::cos(M_PI * f));
    case kGeometric: return std::pow(end_factor, f);
    default: return 1.0;
  }
}

std::string Schedule::str() const {
  const char* name = kind == kLinear ? "linear" : kind == kCosine ? "cosine" : kind == kGeometric ? "geometric" : "constant";
  if (kind == kConstant) return name;
  std::ostringstream s;
  s << name << ':' << end_factor;
  return s.str();
}

Schedule Schedule::parse(const std::string& spec) {
  Schedule s;
  auto colon = spec.find(':');
  std::string kind = spec.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string arg = spec.substr(colon + 1);
    size_t used = 0;
    try {
      s.end_factor = std::stod(arg, &used);
    } catch (...) {
      used = 0;
    }
    // The whole argument must be a number ("0.1x" is a typo, not 0.1).
    if (used == 0 || used != arg.size())
      throw UsageError("bad schedule '" + spec + "': the end factor after ':' must be a number");
    if (!(s.end_factor > 0) || !std::isfinite(s.end_factor))
      throw UsageError("bad schedule '" + spec + "': end factor must be a finite number > 0");
  }
  if (kind == "constant") s.kind = kConstant, s.end_factor = 1.0;
  else if (kind == "linear") s.kind = kLinear;
  else if (kind == "cosine") s.kind = kCosine;
  else if (kind == "geometric") s.kind = kGeometric;
  else throw UsageError("unknown schedule '" + spec + "' (use constant, linear:F, cosine:F, geometric:F)");
  return s;
}

LangevinResult langevin(Energy& energy, const torch::Tensor& x0, const LangevinOptions& o,
                        const LangevinTerms& terms, at::Generator* gen, const LangevinHook& hook) {
  if (o.steps() < 0) throw UsageError("Langevin steps must be >= 0, got " + std::to_string(o.steps()));
  if (!(o.step_size() >= 0 && std::isfinite(o.step_size())))
    throw UsageError("Langevin step size must be finite and >= 0, got " + std::to_string(o.step_size()));
  if (!(o.noise() >= 0 && std::isfinite(o.noise())))
    throw UsageError("Langevin noise must be finite and >= 0, got " + std::to_string(o.noise()));
  if (!(o.grad_clip() >= 0)) throw UsageError("Langevin grad clip must be >= 0, got " + std::to_string(o.grad_clip()));
  if (!std::isfinite(terms.fidelity_weight))
    throw UsageError("data fidelity weight must be finite, got " + std::to_string(terms.fidelity_weight));
  if (o.clamp() && !(o.clamp_min() < o.clamp_max()))
    throw UsageError("Langevin clamp range is empty: [" + std::to_string(o.clamp_min()) + ", " +
                     std::to_string(o.clamp_max()) + "]");
  TORCH_CHECK(x0.dim() >= 2, "langevin: x0 must be [B,...], got ", x0.sizes());

  at::Generator own;
  if (!gen) {
    own = at::detail::createCPUGenerator(o.seed());
    gen = &own;
  }
  const bool fidelity = terms.fidelity_weight != 0.0;
  TORCH_CHECK(!fidelity || terms.fidelity_target.defined(), "fidelity_weight set without fidelity_target");
  torch::Tensor known;
  if (terms.known_mask.defined()) known = (terms.known_mask != 0).expand_as(x0);
  const bool ball = terms.linf_center.defined() && terms.linf_eps > 0;
  torch::Tensor lo, hi;
  if (ball) {
    lo = terms.linf_center - terms.linf_eps;
    hi = terms.linf_center + terms.linf_eps;
  }

  LangevinResult r;
  torch::Tensor x = x0.detach().clone();
  torch::Tensor e;
  for (int64_t t = 0; t < o.steps(); ++t) {
    torch::Tensor g = energy_grad(energy, x, &e);
    if (!torch::isfinite(e).all().item<bool>() || !torch::isfinite(g).all().item<bool>()) {
      r.diverged = true;
      break;
    }
    torch::NoGradGuard ng;
    if (o.grad_clip() > 0) g = g.clamp(-o.grad_clip(), o.grad_clip());
    // Same operation order as the reference denoiser: (g_E + g_data) * step.
    if (fidelity) g = g + 2.0 * terms.fidelity_weight * (x - terms.fidelity_target);
    const double step = o.step_size() * o.step_schedule().factor(t, o.steps());
    const double noise = o.noise() * o.noise_schedule().factor(t, o.steps());
    torch::Tensor nx = x - step * g;
    if (noise > 0) nx = nx + torch::randn(x.sizes(), *gen, x.options()) * noise;
    if (known.defined()) nx = torch::where(known, x0, nx);
    if (ball) nx = torch::max(torch::min(nx, hi), lo);
    if (o.clamp()) nx = nx.clamp(o.clamp_min(), o.clamp_max());
    const bool done = o.tolerance() > 0 && (nx - x).abs().max().item<double>() < o.tolerance();
    x = nx;
    r.steps_run = t + 1;
    if (hook) hook(LangevinStep{t, o.steps(), x, e});
    if (done) {
      r.converged = true;
      break;
    }
  }
  r.x = x;
  {
    torch::NoGradGuard ng;
    r.energy = r.diverged ? e : energy.energy(x).detach();
  }
  return r;
}

}  // namespace ebm
