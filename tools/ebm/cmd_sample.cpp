// ebm sample --model MODEL --n N --out GRID.png [--save FILE]
#include <cstdio>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/compose/attributes.h"
#include "ebm/core/compose.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/core/langevin.h"
#include "ebm/core/models.h"
#include "ebm/io/progress.h"
#include "ebm/train/train.h"

namespace ebm::cli {

namespace {
// What an independent classifier reads in x [N,1,H,W] (through the composition
// judges' classifier path): its argmax histogram, mean max-softmax confidence
// and, for cls >= 0, the share read as cls.
json judge_images(const EnergyPtr& classifier, const torch::Tensor& x, int64_t cls) {
  Judges j;
  j.digit = classifier;
  const Judgement r = judge(j, x);
  const auto hist = torch::bincount(r.digit, {}, classifier->num_classes()).to(torch::kInt64).contiguous();
  json out{{"mean_confidence", r.confidence.mean().item<double>()},
           {"class_histogram", std::vector<int64_t>(hist.data_ptr<int64_t>(), hist.data_ptr<int64_t>() + hist.numel())}};
  if (cls >= 0) out["agreement"] = r.digit.eq(cls).to(torch::kFloat64).mean().item<double>();
  return out;
}
// The card's "sampler" entry fills every sampler flag the user did not give.
// Returns the keys it applied (empty when the card has none).
json apply_card_sampler(const json& card, const CLI::App& sub, SamplerFlags& sf, std::string& init) {
  json applied = json::array();
  if (!card.contains("sampler")) return applied;
  const json& s = card["sampler"];
  if (!s.is_object()) throw DataError("model card: \"sampler\" must be an object");
  auto take = [&](const char* key, const char* flag, auto& field) {
    if (!s.contains(key) || sub.count(flag) > 0) return;
    try {
      field = s[key].get<std::remove_reference_t<decltype(field)>>();
    } catch (const json::exception& e) {
      throw DataError(std::string("model card: malformed \"sampler\".") + key + ": " + e.what());
    }
    applied.push_back(key);
  };
  take("steps", "--steps", sf.steps);
  take("step_size", "--step-size", sf.step_size);
  take("noise", "--noise", sf.noise);
  take("grad_clip", "--grad-clip", sf.grad_clip);
  take("step_schedule", "--step-schedule", sf.step_schedule);
  take("noise_schedule", "--noise-schedule", sf.noise_schedule);
  take("init", "--init", init);
  if (init != "uniform" && init != "gaussian" && init != "gaussian-all")
    throw DataError("model card: \"sampler\".init '" + init + "' is not uniform, gaussian or gaussian-all");
  return applied;
}
}  // namespace

void add_sample(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "sample", "Draw samples from a model by Langevin dynamics from uniform noise (or a Gaussian fitted to data)");
  static std::string model, out, save, init = "uniform", data, judge;
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
                  "`ebm train --buffer-init gaussian` uses; with --class, that class's Gaussian) | gaussian-all\n"
                  "(one Gaussian of the whole fit split: starts carry no class, so with --class only the energy\n"
                  "can make them that class)")
      ->check(CLI::IsMember({"uniform", "gaussian", "gaussian-all"}))
      ->capture_default_str();
  sub->add_option("--data", data, "Dataset for --init gaussian[-all] (default: the model card's \"data\")");
  sub->add_option("--judge", judge,
                  "Classifier that reads the starts and the samples (never the --model itself): class histogram,\n"
                  "mean confidence and, with --class, the share it reads as that class");
  sf.add(sub);
  add_common(sub, c, true);
  sub->footer(
      "A model card may carry the sampler its model was tuned for, e.g. models/fmnist-jem:\n"
      "  \"sampler\": {\"init\": \"gaussian\", \"steps\": 20, \"step_size\": 0.2, \"noise\": 0.005, \"grad_clip\": 0}\n"
      "Those values replace the defaults above; flags given on the command line still win.\n"
      "The report lists what came from the card under \"sampler_from_card\".");
  sub->callback([&run, sub] {
    run = [sub] {
      apply_common(c);
      const json card = load_card(model);
      const json from_card = apply_card_sampler(card, *sub, sf, init);
      EnergyPtr e = load_model(model);
      EnergyPtr judge_model;
      if (!judge.empty()) {
        require(model_hash(judge) != model_hash(model), "--judge '" + judge + "' is the sampled model; a judge must be independent");
        judge_model = load_model(judge);
        require(judge_model->num_classes() > 0, "--judge '" + judge + "' is not a classifier");
        require(cls < 0 || cls < judge_model->num_classes(), "--class " + std::to_string(cls) + " is outside the judge's classes");
      }
      if (cls >= 0) e = std::make_shared<ClassEnergy>(e, cls);
      auto gen = at::detail::createCPUGenerator(c.seed);
      torch::Tensor x0;
      if (init == "gaussian" || init == "gaussian-all") {
        const std::string name = data.empty() ? card.value("data", std::string()) : data;
        if (name.empty()) throw UsageError("--init " + init + " needs --data (the model card names no dataset)");
        DatasetOptions fit_split;
        fit_split.split = "fit";
        const Dataset d = load_dataset(name, fit_split);
        if (init == "gaussian-all") {
          x0 = gaussian_starts(d.images, {})(n, gen);  // one class-agnostic Gaussian
        } else if (cls >= 0) {
          // Starts from that class's Gaussian only (JEM++-style informative starts for E(x|y)).
          if (!d.labels.defined()) throw DataError("--class with --init gaussian needs a labelled dataset; '" + name + "' has no labels");
          const auto idx = (d.labels == cls).nonzero().flatten();
          if (idx.numel() < 2) throw UsageError("--class " + std::to_string(cls) + " has fewer than 2 images in " + name + "/fit");
          x0 = gaussian_starts(d.images.index_select(0, idx), {})(n, gen);
        } else {
          x0 = gaussian_starts(d.images, d.labels)(n, gen);
        }
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
      if (!from_card.empty()) rep["sampler_from_card"] = from_card;
      if (judge_model) {
        rep["judge"] = judge;
        rep["judge_hash"] = model_hash(judge);
        rep["judged_starts"] = judge_images(judge_model, x0, cls);
        rep["judged_samples"] = judge_images(judge_model, r.x, cls);
        // Human-readable lines only when stdout is not carrying the JSON report.
        for (const char* k : {"judged_starts", "judged_samples"}) {
          if (c.json_out == "-") break;
          const auto& j = rep[k];
          std::printf("%-15s judge confidence %.3f", k, j["mean_confidence"].get<double>());
          if (j.contains("agreement")) std::printf(", read as class %lld: %.3f", (long long)cls, j["agreement"].get<double>());
          std::printf("\n");
        }
      }
      write_json(c.json_out, rep);
      if (c.json_out != "-") std::printf("wrote %lld samples to %s\n", (long long)n, out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
