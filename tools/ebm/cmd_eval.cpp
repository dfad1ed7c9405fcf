// ebm eval --model M [--split test]: a trained model's figures on a split.
// Thin: flags bind to ebm::ModelEvalOptions; ebm::evaluate_model() does the work.
#include <cstdio>

#include "cli.h"
#include "ebm/core/models.h"
#include "ebm/train/evaluate.h"

namespace ebm::cli {

void add_model_eval(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("eval", "Evaluate a trained model on a split of its data (test figures come from here)");
  static std::string model;
  static ModelEvalOptions o;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  sub->add_option("--data", o.data, "Dataset (default: the model card's \"data\")");
  sub->add_option("--split", o.split, "test (reported figures) | val (what training reports)")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "val"}));
  sub->add_option("--n", o.n, "Images of the split (the first n)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--samples", o.samples_png, "Replay-buffer models: also write their Langevin samples as a PNG grid");
  add_common(sub, c, true);
  sub->footer(
      "Metrics, by what the model card says it is (include/ebm/train/evaluate.h):\n"
      "  <split>_accuracy, <split>_n   classifiers (thickness attributes: tercile labels)\n"
      "  mean_energy_<split>, mean_energy_uniform_noise\n"
      "  mean_energy_samples           ebm, jem, attribute: after 60 Langevin steps from noise\n"
      "  tweedie_psnr_sigma_S          dsm: one Tweedie step at each training sigma\n"
      "`ebm train` reports the same on the val split; test figures come only from here.\n\n"
      "Example: ebm eval --model models/mnist-clf --split test --n 10000 --json clf-test.json");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      o.seed = c.seed;
      json rep{{"model", model}, {"model_sha256", model_hash(model)}, {"split", o.split}, {"n", o.n},
               {"metrics", evaluate_model(model, o)}, {"command", command_line()}};
      if (c.json_out != "-") {
        for (const auto& [k, v] : rep["metrics"].items()) std::printf("%-28s %s\n", k.c_str(), v.dump().c_str());
      }
      write_json(c.json_out, rep);
      return 0;
    };
  });
}

}  // namespace ebm::cli
