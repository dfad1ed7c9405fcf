#include "ebm/restore/restore.h"

#include <torch/torch.h>

#include <cmath>

#include "ebm/core/chains.h"
#include "ebm/core/common.h"
#include "ebm/io/image_io.h"

namespace ebm {

torch::Tensor denoise(Energy& e, const torch::Tensor& y, const DenoiseOptions& o) {
  auto gen = at::detail::createCPUGenerator(o.seed());
  auto run = [&](const torch::Tensor& obs, int64_t steps, double weight) {
    LangevinOptions lo;
    lo.steps(steps).step_size(o.step_size()).noise(o.noise()).grad_clip(o.grad_clip());
    LangevinTerms terms;
    terms.fidelity_target = obs;
    terms.fidelity_weight = weight;
    auto r = langevin(e, obs, lo, terms, &gen);
    if (r.diverged) throw DivergenceError("denoising diverged (NaN/Inf energy); lower --step-size");
    return r.x;
  };
  if (o.schedule() == "fixed") return run(y, o.steps(), o.data_weight());
  if (o.schedule() == "progressive") {
    torch::Tensor x = y;
    for (double w : o.stage_weights()) x = run(x, o.stage_steps(), w);
    return x;
  }
  throw UsageError("unknown denoise schedule '" + o.schedule() + "' (use fixed or progressive)");
}

torch::Tensor inpaint(Energy& e, const torch::Tensor& image, const torch::Tensor& known,
                      const InpaintOptions& o) {
  if (o.chains() < 1) throw UsageError("--chains must be >= 1, got " + std::to_string(o.chains()));
  auto gen = at::detail::createCPUGenerator(o.seed());
  const int64_t k = o.chains();
  auto img = image.repeat({k, 1, 1, 1});
  auto mask = (known != 0).expand_as(image).repeat({k, 1, 1, 1});
  auto x0 = torch::where(mask, img, torch::rand(img.sizes(), gen));
  LangevinOptions lo;
  lo.steps(o.steps()).step_size(o.step_size()).noise(o.noise()).grad_clip(o.grad_clip());
  lo.step_schedule(o.step_schedule()).noise_schedule(o.noise_schedule());
  LangevinTerms terms;
  terms.known_mask = mask;
  auto r = langevin(e, x0, lo, terms, &gen);
  if (r.diverged) throw DivergenceError("inpainting diverged (NaN/Inf energy); lower --step-size");
  if (k == 1) return r.x;
  return r.x.index_select(0, best_of_k_rows(r.energy, k));  // each image's lowest-energy chain
}

namespace {
// Whether `spec` names a tensor file (tensor_format throws for any other name).
bool is_tensor_file_name(const std::string& spec) {
  try {
    tensor_format(spec);
    return true;
  } catch (const UsageError&) {
    return false;
  }
}
}  // namespace

torch::Tensor make_mask(const std::string& spec, int64_t batch, int64_t h, int64_t w, uint64_t seed) {
  auto known = torch::ones({batch, 1, h, w});
  auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto num = [&](const char* what) {
    try {
      size_t used = 0;
      double v = std::stod(arg, &used);
      if (used != arg.size()) throw std::invalid_argument("");
      return v;
    } catch (...) {
      throw UsageError("bad mask '" + spec + "': " + what + " after ':' must be a number");
    }
  };
  if (kind == "center") {
    const double kv = num("K");  // a whole number in range (checked before the cast)
    if (!(kv >= 1 && kv <= double(std::min(h, w)) && kv == std::floor(kv))) throw UsageError("bad mask '" + spec + "': K must be a whole number in 1.." + std::to_string(std::min(h, w)));
    const int64_t k = static_cast<int64_t>(kv);
    known.narrow(2, (h - k) / 2, k).narrow(3, (w - k) / 2, k).zero_();
  } else if (kind == "random") {
    const double p = num("P");
    if (!(p >= 0 && p <= 1)) throw UsageError("bad mask '" + spec + "': P must be in [0,1]");
    auto gen = at::detail::createCPUGenerator(seed);
    known = (torch::rand({batch, 1, h, w}, gen) >= p).to(torch::kFloat32);
  } else if (spec == "half") {
    known.narrow(2, h / 2, h - h / 2).zero_();
  } else if (colon == std::string::npos && is_tensor_file_name(spec)) {
    auto m = read_images(spec);  // [N,1,H,W] in [0,1]; nonzero = missing
    if (m.size(2) != h || m.size(3) != w)
      throw DataError("'" + spec + "': mask is " + std::to_string(m.size(2)) + "x" + std::to_string(m.size(3)) +
                      ", images are " + std::to_string(h) + "x" + std::to_string(w));
    if (m.size(0) != 1 && m.size(0) != batch)
      throw DataError("'" + spec + "': mask holds " + std::to_string(m.size(0)) + " masks for " + std::to_string(batch) + " images");
    known = (m.select(1, 0).unsqueeze(1) == 0).to(torch::kFloat32).expand({batch, 1, h, w}).contiguous();
  } else {
    throw UsageError("unknown mask '" + spec + "' (use center:K, random:P, half, or a mask file)");
  }
  return known;
}

}  // namespace ebm
