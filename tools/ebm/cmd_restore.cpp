// ebm denoise | ebm inpaint: restoration on user files.
#include <cstdio>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"
#include "ebm/restore/restore.h"

namespace ebm::cli {
namespace {

// `ebm denoise eval` and `ebm inpaint eval`: every EBM method and every tuned
// OpenCV baseline on the test split, one table and one JSON report.
CLI::App* add_restore_eval(CLI::App* parent, Action& run, bool is_inpaint) {
  auto* sub = parent->add_subcommand(
      "eval", is_inpaint ? "Inpaint test images with every EBM method and OpenCV TELEA/NS; PSNR (masked), SSIM, time"
                         : "Denoise test images with every EBM method and tuned OpenCV baselines; PSNR, SSIM, time");
  // Flags bind straight to the options, so each default lives in restore.h only.
  struct Flags {
    std::string model;
    RestoreEvalOptions o;
    bool no_baselines = false;
    std::string markdown;
    Common c;
  };
  auto f = std::make_shared<Flags>();
  auto& o = f->o;
  sub->add_option("--model", f->model, "Energy model (default: models/mnist-dsm-wide for mnist, else models/fmnist-dsm)");
  sub->add_option("--data", o.data(), "Dataset; its test split is evaluated")->capture_default_str();
  if (is_inpaint) {
    sub->add_option("--mask", o.mask(), "center:K | random:P | half | mask file")->capture_default_str();
    sub->add_option("--chains", o.chains(),
                    "Chains per image for EBM methods (reference/annealed keep the lowest energy; tweedie averages)")
        ->capture_default_str();
    sub->add_option("--sigma-max", o.sigma_max(),
                    "First noise level of ebm-tweedie (0 = the model's largest training sigma, else 0.4)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--sigma-min", o.sigma_min(),
                    "Last noise level of ebm-tweedie (higher = smoother chains, nearer the posterior mean)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    sub->add_option("--levels", o.levels(), "Noise levels of ebm-tweedie (geometric --sigma-max -> --sigma-min)")
        ->capture_default_str();
    sub->add_option("--repeats", o.repeats(), "Renoise-denoise steps per level of ebm-tweedie")->capture_default_str();
  } else {
    sub->add_option("--sigma", o.sigma(), "Noise std added to clean test images (then clipped to [0,1])")->capture_default_str();
  }
  sub->add_option("--n", o.n(), "Images (the first n of the split)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--split", o.split(), "test (report) | val (tune without touching test)")->capture_default_str();
  sub->add_option("--n-val", o.n_val(), "Validation images for tuning the baselines")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--methods", o.methods(), "EBM methods to run (default: all)")->delimiter(',');
  sub->add_flag("--no-baselines", f->no_baselines, "Skip the OpenCV baselines");
  sub->add_option("--grid", o.grid(), "PNG: rows clean / input / each method (first 8 images)");
  sub->add_option("--markdown", f->markdown, "Also write the table as Markdown");
  add_common(sub, f->c, true);
  sub->callback([&run, f, is_inpaint] {
    run = [f, is_inpaint] {
      apply_common(f->c);
      check_outputs({f->o.grid(), f->markdown, f->c.json_out});  // before any work, and before any one is written
      auto& o = f->o;
      if (f->model.empty()) f->model = default_restore_model(o.data());
      auto e = load_model(f->model);
      o.baselines(!f->no_baselines).seed(f->c.seed);
      const RestoreReport r = is_inpaint ? inpaint_eval(*e, o) : denoise_eval(*e, o);
      json rep = r.to_json();
      rep["model"] = f->model;
      rep["model_sha256"] = model_hash(f->model);
      rep["command"] = command_line();
      if (!f->markdown.empty()) write_file_atomic(f->markdown, r.to_markdown());
      if (f->c.json_out != "-") std::fputs(r.to_text().c_str(), stdout);
      write_json(f->c.json_out, rep);
      return 0;
    };
  });
  return sub;
}

}  // namespace

void add_denoise(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("denoise", "Denoise images: argmin_x E(x) + lambda*||x - y||^2");
  sub->footer(
      "Gradient steps x <- clamp(x - step*(grad E(x) + 2*lambda*(x - y)), 0, 1).\n"
      "--schedule fixed is the reference denoise_with_ebm; progressive runs 50 steps\n"
      "at each data weight 1, 0.5, 0.25, 0.1 (the reference progressive_denoising).\n\n"
      "--solver picks the method on the same objective (names as in `ebm denoise eval`):\n"
      "  gd        the gradient steps above (--schedule fixed|progressive)\n"
      "  tweedie   one step x = y - sigma^2 grad E(y); needs --sigma (MMSE for a DSM energy)\n"
      "  map       lambda = 1/(2 sigma^2), 50 steps of 0.3 sigma^2; needs --sigma\n"
      "  auto      tweedie when --sigma is given, else gd. Tweedie is the default because in\n"
      "            `ebm denoise eval` it gave both the highest PSNR and the lowest cost of\n"
      "            the EBM solvers (README, Shipped models and measured results).\n\n"
      "Example: ebm denoise --model models/fmnist-dsm --input noisy.npy --sigma 0.2 --out clean.png");
  static std::string model, input, out;
  static DenoiseOptions o;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file (required)");
  sub->add_option("--input", input, "Noisy images (.idx/.npy/.png), pixels in [0,1] (required)")->check(CLI::ExistingFile);
  sub->add_option("--out", out, "Output file (.idx/.npy/.png) (required)");
  auto* eval = add_restore_eval(sub, run, /*inpaint=*/false);
  sub->add_option("--solver", o.solver(), "auto | gd | tweedie | map")->capture_default_str()->check(CLI::IsMember({"auto", "gd", "tweedie", "map"}));
  sub->add_option("--sigma", o.sigma(), "Noise std of the input, when known (enables tweedie/map)")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--schedule", o.schedule(), "fixed | progressive")->capture_default_str()->check(CLI::IsMember({"fixed", "progressive"}));
  sub->add_option("--steps", o.steps(), "Steps (fixed schedule)")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--step-size", o.step_size(), "Gradient step size")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--data-weight", o.data_weight(), "lambda of the fidelity term (fixed schedule)")->capture_default_str();
  sub->add_option("--noise", o.noise(), "Langevin noise std (0 = plain gradient descent)")->capture_default_str()->check(CLI::NonNegativeNumber);
  add_common(sub, c);
  sub->callback([&run, eval] {
    if (eval->parsed()) return;
    require(!model.empty() && !input.empty() && !out.empty(), "denoise needs --model, --input and --out (or: ebm denoise eval --help)");
    run = [] {
      apply_common(c);
      o.seed(c.seed);
      const std::string solver = denoise_solver(o);
      auto e = load_model(model);
      auto y = read_images(input);
      const auto x = denoise_solve(*e, y, o);
      write_tensor(out, x);
      std::printf("denoised %lld image(s) with %s -> %s\n", (long long)x.size(0), solver.c_str(), out.c_str());
      return 0;
    };
  });
}

void add_inpaint(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "inpaint",
      "Fill missing pixels by Langevin on the energy; known pixels stay exactly as given.");
  static std::string model, input, out;
  static InpaintOptions o;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file (required)");
  sub->add_option("--input", input, "Images (.idx/.npy/.png), pixels in [0,1] (required)")->check(CLI::ExistingFile);
  sub->add_option("--mask", o.mask(), "center:K | random:P | half | mask file (nonzero = missing)")->capture_default_str();
  sub->add_option("--out", out, "Output file (.idx/.npy/.png) (required)");
  auto* eval = add_restore_eval(sub, run, /*inpaint=*/true);
  sub->add_option("--steps", o.steps(), "Langevin steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--step-size", o.step_size(), "Gradient step size")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--noise", o.noise(), "Noise std per step")->capture_default_str()->check(CLI::NonNegativeNumber);
  sub->add_option("--chains", o.chains(), "Chains per image; lowest final energy wins")->capture_default_str()->check(CLI::PositiveNumber);
  add_common(sub, c);
  sub->callback([&run, eval] {
    if (eval->parsed()) return;
    require(!model.empty() && !input.empty() && !out.empty(), "inpaint needs --model, --input and --out (or: ebm inpaint eval --help)");
    run = [] {
      apply_common(c);
      auto e = load_model(model);
      auto img = read_images(input);
      auto known = make_mask(o.mask(), img.size(0), img.size(2), img.size(3), c.seed);
      auto x = inpaint(*e, img, known, o.seed(c.seed));
      write_tensor(out, x);
      std::printf("inpainted %lld image(s) (mask %s) -> %s\n", (long long)x.size(0), o.mask().c_str(), out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
