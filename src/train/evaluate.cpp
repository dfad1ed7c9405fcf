// evaluate.cpp: evaluate_model (evaluate.h).
#include "ebm/train/evaluate.h"

#include <torch/torch.h>

#include <cstdio>

#include "ebm/compose/morphology.h"
#include "ebm/core/common.h"
#include "ebm/core/langevin.h"
#include "ebm/core/models.h"
#include "ebm/core/tweedie.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/metrics/metrics.h"
#include "ebm/train/tasks.h"

namespace ebm {

using json = nlohmann::json;

json evaluate_model(Energy& model, const json& card, const ModelEvalOptions& o) {
  check_eval_split(o.split);
  if (o.n <= 0) throw UsageError("evaluation n must be > 0, got " + std::to_string(o.n));
  const std::string data = o.data.empty() ? card.value("data", std::string()) : o.data;
  if (data.empty()) throw UsageError("no dataset: the model card names none; pass one");
  const TaskKind task = parse_task(card.value("task", std::string("ebm")));
  const json opts = card.value("options", json::object());
  model.set_training(false);

  DatasetOptions dopt;
  dopt.split = o.split;
  dopt.n = o.n;
  dopt.root = o.root;
  const Dataset d = load_dataset(data, dopt);
  json metrics;
  torch::Tensor labels = d.labels;
  if (card.contains("attribute") && card["attribute"].value("attribute", "") == "thickness") {
    const auto& b = card["attribute"].at("tercile_boundaries");
    labels = thickness_class(stroke_thickness(d.images), b.at(0).get<double>(), b.at(1).get<double>());
  }
  if (model.num_classes() > 0 && labels.defined()) {
    const auto pred = map_batched(d.images, kScoringBatch, [&](const torch::Tensor& x) { return model.logits(x).argmax(1); });
    metrics[o.split + "_accuracy"] = accuracy(pred, labels);
    metrics[o.split + "_n"] = d.size();
  }
  metrics["mean_energy_" + o.split] = energy_batched(model, d.images).mean().item<double>();
  auto gen = at::detail::createCPUGenerator(o.seed + 1);
  const auto noise = torch::rand({200, 1, 28, 28}, gen);
  metrics["mean_energy_uniform_noise"] = energy_batched(model, noise).mean().item<double>();
  if (uses_replay_buffer(task)) {
    const auto sg = LangevinOptions()
                        .steps(60)
                        .step_size(opts.value("sgld_step", 10.0))
                        .noise(opts.value("sgld_noise", 0.005))
                        .grad_clip(opts.value("sgld_grad_clip", 0.03));
    const auto r = langevin(model, noise, sg, {}, &gen);
    metrics["mean_energy_samples"] = r.energy.mean().item<double>();
    if (!o.samples_png.empty()) write_png_grid(o.samples_png, r.x.narrow(0, 0, 64));
  }
  if (task == TaskKind::kDsm) {
    // Tweedie denoising x^ = x~ - sigma^2 grad E(x~) at each training sigma.
    const auto x = d.images.narrow(0, 0, std::min<int64_t>(500, d.size()));
    const bool clip = opts.value("dsm_clip", false);
    for (double s : opts.value("dsm_sigmas", std::vector<double>{})) {
      auto xt = x + s * torch::randn(x.sizes(), gen);
      if (clip) xt = xt.clamp(0, 1);
      const auto xh = tweedie_step(model, xt, s);
      auto psnr = [&](const torch::Tensor& a) {
        return (10 * torch::log10(1.0 / (a - x).pow(2).flatten(1).mean(1))).mean().item<double>();
      };
      char key[64];
      std::snprintf(key, sizeof key, "tweedie_psnr_sigma_%.2f", s);
      metrics[key] = psnr(xh);
      std::snprintf(key, sizeof key, "noisy_psnr_sigma_%.2f", s);
      metrics[key] = psnr(xt.clamp(0, 1));
    }
  }
  return metrics;
}

json evaluate_model(const std::string& path, const ModelEvalOptions& o) {
  auto e = load_model(path);
  return evaluate_model(*e, load_card(path), o);
}

}  // namespace ebm
