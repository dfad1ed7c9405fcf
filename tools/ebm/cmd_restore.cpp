// ebm denoise | ebm inpaint: restoration on user files.
#include <cstdio>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/image_io.h"
#include "ebm/models.h"
#include "ebm/restore.h"

namespace ebm::cli {

void add_denoise(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("denoise", "Denoise images: argmin_x E(x) + lambda*||x - y||^2");
  sub->footer(
      "Gradient steps x <- clamp(x - step*(grad E(x) + 2*lambda*(x - y)), 0, 1).\n"
      "--schedule fixed is the reference denoise_with_ebm; progressive runs 50 steps\n"
      "at each data weight 1, 0.5, 0.25, 0.1 (the reference progressive_denoising).\n\n"
      "Example: ebm denoise --model models/fmnist-dsm --input noisy.npy --out clean.png");
  static std::string model, input, out, schedule = "fixed";
  static DenoiseOptions o;
  static int64_t steps = 100;
  static double step_size = 0.01, data_weight = 10.0, noise = 0.0;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--input", input, "Noisy images (.idx/.npy/.png), pixels in [0,1]")->required()->check(CLI::ExistingFile);
  sub->add_option("--out", out, "Output file (.idx/.npy/.png)")->required();
  sub->add_option("--schedule", schedule, "fixed | progressive")->capture_default_str()->check(CLI::IsMember({"fixed", "progressive"}));
  sub->add_option("--steps", steps, "Steps (fixed schedule)")->capture_default_str();
  sub->add_option("--step-size", step_size, "Gradient step size")->capture_default_str();
  sub->add_option("--data-weight", data_weight, "lambda of the fidelity term (fixed schedule)")->capture_default_str();
  sub->add_option("--noise", noise, "Langevin noise std (0 = plain gradient descent)")->capture_default_str();
  add_common(sub, c);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      auto e = load_model(model);
      auto y = read_images(input);
      o.schedule(schedule).steps(steps).step_size(step_size).data_weight(data_weight).noise(noise).seed(c.seed);
      auto x = denoise(*e, y, o);
      write_tensor(out, x);
      std::printf("denoised %lld image(s) -> %s\n", (long long)x.size(0), out.c_str());
      return 0;
    };
  });
}

void add_inpaint(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "inpaint",
      "Fill missing pixels by Langevin on the energy; known pixels stay exactly as given.");
  static std::string model, input, out, mask = "center:14";
  static InpaintOptions o;
  static int64_t steps = 200, chains = 1;
  static double step_size = 0.01, noise = 0.005;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--input", input, "Images (.idx/.npy/.png), pixels in [0,1]")->required()->check(CLI::ExistingFile);
  sub->add_option("--mask", mask, "center:K | random:P | half | mask file (nonzero = missing)")->capture_default_str();
  sub->add_option("--out", out, "Output file (.idx/.npy/.png)")->required();
  sub->add_option("--steps", steps, "Langevin steps")->capture_default_str();
  sub->add_option("--step-size", step_size, "Gradient step size")->capture_default_str();
  sub->add_option("--noise", noise, "Noise std per step")->capture_default_str();
  sub->add_option("--chains", chains, "Chains per image; lowest final energy wins")->capture_default_str()->check(CLI::PositiveNumber);
  add_common(sub, c);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      auto e = load_model(model);
      auto img = read_images(input);
      auto known = make_mask(mask, img.size(0), img.size(2), img.size(3), c.seed);
      o.steps(steps).step_size(step_size).noise(noise).chains(chains).seed(c.seed);
      auto x = inpaint(*e, img, known, o);
      write_tensor(out, x);
      std::printf("inpainted %lld image(s) (mask %s) -> %s\n", (long long)x.size(0), mask.c_str(), out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
