// ebm sample --model MODEL --n N --out GRID.png [--save FILE]
// Thin: flags bind to ebm::SampleOptions; ebm::sample() does the work.
#include <cstdio>
#include <memory>

#include "cli.h"
#include "ebm/io/image_io.h"
#include "ebm/io/progress.h"
#include "ebm/train/sample.h"

namespace ebm::cli {

void add_sample(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "sample",
      "Draw samples from a model by Langevin dynamics from uniform noise (or a Gaussian fitted to data):\n"
      "annealed over noise levels for noise-conditional models, at one temperature otherwise");
  static std::string model, out, save, judge;
  static SampleOptions o;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--n", o.n(), "Number of samples")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--out", out, "PNG grid of the samples")->required();
  sub->add_option("--save", save, "Also save the samples as a tensor (.npy/.idx)");
  sub->add_option("--class", o.cls(), "For classifiers: sample E(x|y=class) = -logits[class] (-1 = the model's energy)")
      ->capture_default_str();
  sub->add_option("--init", o.init(),
                  "Chain starts: uniform (U(0,1)) | gaussian (per-class Gaussian of --data's fit split, as\n"
                  "`ebm train --buffer-init gaussian` uses; with --class, that class's Gaussian) | gaussian-all\n"
                  "(one Gaussian of the whole fit split: starts carry no class, so with --class only the energy\n"
                  "can make them that class)")
      ->check(CLI::IsMember({"uniform", "gaussian", "gaussian-all"}))
      ->capture_default_str();
  sub->add_option("--data", o.data(), "Dataset for --init gaussian[-all] (default: the model card's \"data\")");
  sub->add_option("--judge", judge,
                  "Classifier that reads the starts and the samples (never the --model itself): class histogram,\n"
                  "mean confidence and, with --class, the share it reads as that class");
  add_quality_flags(sub, o.quality());
  add_langevin_flags(sub, o.langevin(), "", "Langevin sampler (one temperature)");
  add_annealed_flags(sub, o.annealed(), o.sampler(), "Annealed sampler (noise-conditional models)");
  add_common(sub, c, true);
  sub->footer(
      "A model card may carry the sampler its model was tuned for, e.g. models/fmnist-jem:\n"
      "  \"sampler\": {\"init\": \"gaussian\", \"steps\": 20, \"step_size\": 0.2, \"noise\": 0.005, \"grad_clip\": 0}\n"
      "or, for a noise-conditional model, {\"method\": \"annealed\", \"levels\": 10, \"steps_per_level\": 20, ...}.\n"
      "Those values replace the defaults above; flags given on the command line still win.\n"
      "The report lists what came from the card under \"sampler_from_card\".\n"
      "With --judge the report also gives the Frechet distance of the samples to as many real test\n"
      "images (of --class, else all; dataset: --data, else the card's) in the judge's features, the\n"
      "same for two disjoint real sets (frechet_reference) and their ratio; for MNIST with --class,\n"
      "knn_agreement (a pixel kNN judge fitted on mnist/fit). Off with --no-frechet / --no-knn.");
  sub->callback([&run, sub] {
    run = [sub] {
      apply_common(c);
      check_outputs({out, save, c.json_out});
      if (!save.empty()) tensor_format(save);
      std::set<std::string> given = given_langevin_keys(sub);
      if (sub->count("--init") > 0) given.insert("init");
      o.seed(c.seed);
      std::unique_ptr<Progress> bar;  // the step count is known once the card has been read
      const SampleReport r = sample(model, o, given, judge, [&](int64_t done, int64_t total) {
        if (!bar) bar = std::make_unique<Progress>("sample", total);
        bar->update(done);
      });
      if (bar) bar->finish();
      write_png_grid(out, r.x);
      if (!save.empty()) write_tensor(save, r.x);
      json rep = r.to_json();
      rep["out"] = out;
      rep["command"] = command_line();
      if (c.json_out != "-") std::fputs(r.to_text().c_str(), stdout);
      write_json(c.json_out, rep);
      if (c.json_out != "-") std::printf("wrote %lld samples to %s\n", (long long)o.n(), out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
