#include "cli.h"

#include <torch/version.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "ebm/core/common.h"
#include "ebm/core/langevin.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/io/progress.h"

namespace ebm::cli {

void build_app(CLI::App& app, Action& run) {
  app.description(
      "ebm: train energy-based models on images and use the energy for OOD detection,\n"
      "compositional generation, denoising, inpainting and adversarial purification.\n"
      "Run `ebm <command> --help` for each command's flags.");
  app.name("ebm");
  const std::string ver = std::string("ebm ") + version() + " (LibTorch " + TORCH_VERSION +
                          ", BLAS: " + blas_info() + ")";
  app.set_version_flag("--version", ver);
  app.require_subcommand(1);
  app.fallthrough(false);
  add_data(app, run);
  add_info(app, run);
  add_sample(app, run);
  add_denoise(app, run);
  add_inpaint(app, run);
  add_train(app, run);
  add_model_eval(app, run);
  add_ood(app, run);
  add_compose(app, run);
  add_defend(app, run);
  add_serve(app, run);
  add_export(app, run);
  add_launch(app, run);
}

void add_common(CLI::App* sub, Common& c, bool with_json) {
  sub->add_option("--threads", c.threads, "Intra-op threads (default: all cores)")->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", c.seed, "Random seed; same seed + thread count = same result")->capture_default_str();
  sub->add_flag("--quiet,-q", c.quiet, "No progress output on stderr");
  if (with_json) sub->add_option("--json", c.json_out, "Write the JSON report to FILE ('-' = stdout)");
}

namespace {
// The sampler's flags and the card/report keys they set, in one table.
struct LangevinFlag {
  const char* flag;  // after the prefix
  const char* key;
};
constexpr LangevinFlag kLangevinFlags[] = {{"steps", "steps"},           {"step-size", "step_size"},
                                           {"noise", "noise"},           {"grad-clip", "grad_clip"},
                                           {"step-schedule", "step_schedule"}, {"noise-schedule", "noise_schedule"},
                                           {"sampler", "method"},        {"sigma-max", "sigma_max"},
                                           {"sigma-min", "sigma_min"},   {"levels", "levels"},
                                           {"steps-per-level", "steps_per_level"}, {"epsilon", "epsilon"},
                                           {"corrector", "corrector"}};

}  // namespace

CLI::Option* add_schedule_flag(CLI::App* sub, const std::string& flag, Schedule& target, const std::string& help) {
  return sub
      ->add_option_function<std::string>(
          flag,
          [flag, &target](const std::string& spec) {
            try {
              target = Schedule::parse(spec);
            } catch (const UsageError& e) {
              throw CLI::ValidationError(flag, e.what());
            }
          },
          help)
      ->default_str(target.str());
}

void add_langevin_flags(CLI::App* sub, LangevinOptions& o, const std::string& prefix, const std::string& group) {
  const std::string p = "--" + prefix;
  std::vector<CLI::Option*> opts{
      sub->add_option(p + "steps", o.steps(), "Langevin steps")->capture_default_str()->check(CLI::NonNegativeNumber),
      sub->add_option(p + "step-size", o.step_size(), "Gradient step size")->capture_default_str()->check(CLI::NonNegativeNumber),
      sub->add_option(p + "noise", o.noise(), "Noise std per step (separate from the step size)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber),
      sub->add_option(p + "grad-clip", o.grad_clip(), "Cap on |grad E| per pixel per step (0 = off)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber),
      add_schedule_flag(sub, p + "step-schedule", o.step_schedule(), "constant | linear:F | cosine:F | geometric:F"),
      add_schedule_flag(sub, p + "noise-schedule", o.noise_schedule(), "Same forms as the step schedule")};
  if (!group.empty())
    for (auto* opt : opts) opt->group(group);
}

void add_annealed_flags(CLI::App* sub, AnnealedOptions& o, std::string& method, const std::string& group) {
  std::vector<CLI::Option*> opts{
      sub->add_option("--sampler", method,
                      "auto (annealed on a noise-conditional model such as --arch conv-ebm-nc, else langevin) |\n"
                      "langevin (one temperature: --steps, --step-size, ...) | annealed (--sigma-max ... --corrector)")
          ->check(CLI::IsMember({"auto", "langevin", "annealed"}))
          ->capture_default_str(),
      sub->add_option("--sigma-max", o.sigma_max(), "Annealed: first (largest) noise level")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      sub->add_option("--sigma-min", o.sigma_min(), "Annealed: last noise level; a final Tweedie step denoises at it")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      sub->add_option("--levels", o.levels(), "Annealed: noise levels, geometric from --sigma-max to --sigma-min")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      sub->add_option("--steps-per-level", o.steps_per_level(), "Annealed: corrector steps at each level")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      sub->add_option("--epsilon", o.epsilon(),
                      "Annealed: step at --sigma-min; the step at level sigma is epsilon * sigma^2 / sigma_min^2")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      sub->add_option("--corrector", o.corrector(),
                      "Annealed: ula (unadjusted) | mala (Metropolis-adjusted; the report gives its acceptance)")
          ->check(CLI::IsMember({"ula", "mala"}))
          ->capture_default_str()};
  if (!group.empty())
    for (auto* opt : opts) opt->group(group);
}

void add_quality_flags(CLI::App* sub, QualityOptions& o) {
  sub->add_flag("--frechet,!--no-frechet", o.frechet(),
                "Frechet distance of the samples to real images with the same attributes (--frechet-split), in the judge's\n"
                "penultimate features, beside two real sets of the same size (the real-vs-real reference)")
      ->default_str(o.frechet() ? "true" : "false");  // flags capture no default; show the struct's
  sub->add_option("--frechet-n", o.frechet_n(), "Samples (and real images per set) the Frechet distance uses; 0 = all")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--frechet-split", o.real_split(),
                  "Split the real images come from: test for reported figures, fit (or val) when the figure\n"
                  "chooses a setting, so that no choice sees the test images (falls back to fit when the\n"
                  "split has fewer than 2n images with the attributes)")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "fit", "val", "train"}));
  sub->add_option("--frechet-draws", o.draws(), "Random pairs of real sets the Frechet figures are averaged over")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_flag("--knn,!--no-knn", o.knn(),
                "Share of samples a pixel kNN judge (fitted on mnist/fit) reads as the intended digit (MNIST, a fixed digit)")
      ->default_str(o.knn() ? "true" : "false");
}

std::set<std::string> given_langevin_keys(const CLI::App* sub, const std::string& prefix) {
  std::set<std::string> given;
  for (const auto& f : kLangevinFlags)
    if (const auto* opt = sub->get_option_no_throw("--" + prefix + f.flag); opt && opt->count() > 0) given.insert(f.key);
  return given;
}

void apply_common(const Common& c) {
  set_threads(c.threads);
  Progress::set_quiet(c.quiet);  // progress is on stderr, so `--json -` stays clean either way
}

void write_json(const std::string& where, const json& j) {
  const std::string s = j.dump(2) + "\n";
  if (where == "-") {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  } else if (!where.empty()) {
    write_file_atomic(where, s);
  }
}

void check_outputs(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    if (p.empty() || p == "-") continue;
    if (is_dir(p)) throw DataError("cannot write '" + p + "': it is a folder");
    const std::string tmp = p + ".tmp." + std::to_string(::getpid());
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw DataError("cannot write '" + p + "': " + std::strerror(errno));
    std::fclose(f);
    std::remove(tmp.c_str());
  }
}

void require(bool cond, const std::string& message) {
  if (!cond) throw UsageError(message);
}

namespace {
std::string g_cmdline;
}
const std::string& command_line() { return g_cmdline; }

std::string provenance_header(const std::vector<std::string>& model_paths) {
  std::string models;
  for (const auto& p : model_paths) models += (models.empty() ? "" : ", ") + p + " " + model_hash(p);
  return "command: " + command_line() + "\nmodels: " + models + "\n\n";
}
void set_command_line(int argc, char** argv) {
  g_cmdline.clear();
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i == 0) a = "ebm";
    bool quote = a.find_first_of(" \"'&|!*()") != std::string::npos;
    g_cmdline += (i ? " " : "") + (quote ? "'" + a + "'" : a);
  }
}

}  // namespace ebm::cli
