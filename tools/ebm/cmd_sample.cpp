// ebm sample --model MODEL --n N --out GRID.png [--save FILE]
#include <cstdio>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/compose.h"
#include "ebm/data.h"
#include "ebm/image_io.h"
#include "ebm/langevin.h"
#include "ebm/models.h"
#include "ebm/progress.h"
#include "ebm/train.h"

namespace ebm::cli {

void add_sample(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "sample", "Draw samples from a model by Langevin dynamics from uniform noise (or a Gaussian fitted to data)");
  static std::string model, out, save, init = "uniform", data;
  static int64_t n = 64, cls = -1;
  static SamplerFlags sf;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--n", n, "Number of samples")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--out", out, "PNG grid of the samples")->required();
  sub->add_option("--save", save, "Also save the samples as a tensor (.npy/.idx)");
  sub->add_option("--class", cls, "For classifiers: sample E(x|y=class) = -logits[class]");
  sub->add_option("--init", init,
                  "Chain starts: uniform (U(0,1)) | gaussian (per-class Gaussian of --data's fit split, as\n"
                  "`ebm train --buffer-init gaussian` uses)")
      ->check(CLI::IsMember({"uniform", "gaussian"}))
      ->capture_default_str();
  sub->add_option("--data", data, "Dataset for --init gaussian (default: the model card's \"data\")");
  sf.add(sub);
  add_common(sub, c, true);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      EnergyPtr e = load_model(model);
      if (cls >= 0) e = std::make_shared<ClassEnergy>(e, cls);
      auto gen = at::detail::createCPUGenerator(c.seed);
      torch::Tensor x0;
      if (init == "gaussian") {
        const std::string name = data.empty() ? load_card(model).value("data", std::string()) : data;
        if (name.empty()) throw UsageError("--init gaussian needs --data (the model card names no dataset)");
        DatasetOptions fit_split;
        fit_split.split = "fit";
        const Dataset d = load_dataset(name, fit_split);
        x0 = gaussian_starts(d.images, d.labels)(n, gen);
      } else {
        x0 = torch::rand({n, 1, 28, 28}, gen);
      }
      Progress bar("sample", sf.steps);
      auto r = langevin(*e, x0, sf.options(c.seed), {}, &gen, [&](const LangevinStep& s) {
        bar.update(s.step + 1, "E " + std::to_string(s.energy.mean().item<double>()));
      });
      bar.finish();
      if (r.diverged) throw DivergenceError("sampling diverged at step " + std::to_string(r.steps_run) + "; lower --step-size");
      write_png_grid(out, r.x);
      if (!save.empty()) write_tensor(save, r.x);
      json rep{{"model", model}, {"n", n}, {"steps", sf.steps}, {"step_size", sf.step_size},
               {"noise", sf.noise}, {"grad_clip", sf.grad_clip}, {"seed", c.seed}, {"init", init},
               {"mean_energy", r.energy.mean().item<double>()}, {"out", out}};
      write_json(c.json_out, rep);
      if (c.json_out != "-") std::printf("wrote %lld samples to %s\n", (long long)n, out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
