// ebm compose --expr E --n N --out GRID.png [--save FILE]
// ebm compose eval --expr E | --all-pairs --n N --json FILE
// ebm compose calibrate --model M
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/compose/composer.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"
#include "ebm/io/progress.h"

namespace ebm::cli {

namespace {

const char* kLanguage =
    "Expressions:\n"
    "  digit=3 & thick        AND: the sum of the two energies\n"
    "  digit=3 | digit=8      OR: -logsumexp(-s*E_i)/s, s = --or-temperature\n"
    "  digit=7 & !thick       NOT: E_pos - alpha*E_neg, alpha = --not-weight\n"
    "  digit=2 & 0.5*thin     weights; parentheses group\n"
    "  model:path/to/model    a whole model's energy as an atom\n"
    "Atoms are attribute values of the --attr-models (digit=0..9, thickness=thin|medium|thick)\n"
    "or an alias naming a value of one attribute (thin, medium, thick). Each atom's energy is\n"
    "-log p(value|x) of its attribute model at the temperature calibrated on the validation\n"
    "split (card \"calibration\"; `ebm compose calibrate`), so atoms of different models share\n"
    "one scale (nats); the unconditional --prior is added once, giving -log p(x|values).\n";

// Flags of everything a composition needs, shared by `compose` and `compose
// eval`, bound to the library's ComposerOptions (whose defaults they show).
void add_composer_flags(CLI::App* sub, ComposerOptions& f) {
  sub->add_option("--attr-models,--model", f.attr_models(), "Attribute models, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--prior", f.prior(), "Unconditional prior energy added once ('none' = no prior)")->capture_default_str();
  sub->add_option("--prior-weight", f.compose().prior_weight(), "Weight of the prior")->capture_default_str();
  sub->add_option("--guidance", f.compose().guidance(), "Scale g on the attribute energies: p(x) * p(c|x)^g")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--guide-on", f.compose().guide_on(),
                  "With a noise-conditional prior, where the atoms read the image at each level: denoised\n"
                  "(the prior's Tweedie estimate) | noisy (the noisy chain; for noise-aware attribute models)")
      ->capture_default_str()
      ->check(CLI::IsMember({"denoised", "noisy"}));
  sub->add_option("--not-weight", f.compose().not_weight(), "alpha of NOT: E_pos - alpha*E_neg")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--or-temperature", f.compose().or_temperature(), "s of OR: -logsumexp(-s*E_i)/s (1 = exact for -log p atoms)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--restarts", f.sample().restarts(), "Chains per sample; the one with the lowest --select energy is kept")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--select", f.select(),
                  "Which energy picks among restarts: expr (the expression alone, no prior) | total (what was sampled)")
      ->capture_default_str()
      ->check(CLI::IsMember({"expr", "total"}));
  sub->add_option("--batch", f.sample().batch(), "Chains per batch")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--init", f.init(),
                  "Chain starts: uniform (noise) | data (random fit-split images + --init-noise) | auto\n"
                  "(uniform for the annealed sampler, data for the one-temperature one)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "uniform", "data"}));
  sub->add_option("--init-noise", f.sample().init_noise(), "Noise std added to data starts")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_langevin_flags(sub, f.sample().langevin(), "", "One-temperature sampler (--sampler langevin)");
  add_annealed_flags(sub, f.sample().annealed(), f.sample().sampler(),
                     "Annealed sampler (--sampler annealed; the default with a noise-conditional --prior)");
}

// The keys of a prior card's "compose" entry whose flags were given: they win.
std::set<std::string> given_compose_keys(const CLI::App* sub) {
  std::set<std::string> given = given_langevin_keys(sub);  // the sampler's keys, annealed ones included
  static const std::pair<const char*, const char*> kFlags[] = {
      {"--guidance", "guidance"},        {"--not-weight", "not_weight"}, {"--or-temperature", "or_temperature"},
      {"--prior-weight", "prior_weight"}, {"--guide-on", "guide_on"},     {"--restarts", "restarts"},
      {"--init", "init"}};
  for (const auto& [flag, key] : kFlags)
    if (const auto* opt = sub->get_option_no_throw(flag); opt && opt->count() > 0) given.insert(key);
  return given;
}

std::string sidecar_path(const std::string& out) {
  const auto dot = out.find_last_of('.');
  const auto slash = out.find_last_of('/');
  return (dot == std::string::npos || (slash != std::string::npos && dot < slash) ? out : out.substr(0, dot)) + ".json";
}

void add_compose_eval(CLI::App* parent, Action& run) {
  auto* sub = parent->add_subcommand("eval", "Judge composed samples with models never used to generate them");
  sub->footer(std::string(kLanguage) +
              "\nJudges: digits by --judge (a separate classifier), thickness by ebm::stroke_thickness\n"
              "with the tercile boundaries of the thickness model's training data.\n"
              "success_rate = share of samples satisfying every positive term and no negated one;\n"
              "diversity = mean pairwise L2 of the samples / the same on real test images that the\n"
              "judges find satisfying the expression. With several expressions the JSON has \"pairs\"\n"
              "and \"mean_success_rate\", the mean over the expressions that contain '&'.\n"
              "frechet = Frechet distance, in --judge's penultimate features, between the samples and as\n"
              "many real images with the attributes the expression fixes (digit=d: the dataset's label;\n"
              "thin/medium/thick: the thickness rule above; atoms under | or ! fix nothing), from the test\n"
              "split, or from fit when test has fewer than 2n (\"frechet_real\" says which);\n"
              "frechet_reference = the same between two disjoint real sets of that size; frechet_ratio =\n"
              "their ratio (FD at small n is biased upward; the reference shares n, so the ratio is fair).\n"
              "knn_agreement = share a pixel kNN judge (fitted on mnist/fit) reads as the fixed digit.\n\n"
              "Examples:\n"
              "  ebm compose eval --expr \"digit=3 & thick\" --n 100 --json r.json\n"
              "  ebm compose eval --all-pairs --n 100 --json pairs.json   # 10 digits x thin/medium/thick\n");
  static std::string expr, grid;
  static bool all_pairs = false;
  static ComposeEvalOptions eo;
  static ComposerOptions f;
  static Common c;
  sub->add_option("--expr", expr, "Expression(s) to evaluate, ';'-separated");
  sub->add_flag("--all-pairs", all_pairs, "Every digit=d & thickness=t (10 x 3) plus digit=d alone as the baseline");
  sub->add_option("--n", eo.n(), "Samples per expression")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--judge", eo.judge(), "Digit judge (never used for generation)")->capture_default_str();
  sub->add_option("--grid", grid, "PNG grid: the first min(10, n) samples of each expression, one row each");
  add_quality_flags(sub, eo.quality());
  add_composer_flags(sub, f);
  add_common(sub, c, true);
  sub->callback([&run, sub] {
    require(all_pairs || !expr.empty(), "compose eval needs --expr or --all-pairs");
    run = [sub] {
      apply_common(c);
      std::vector<std::string> exprs;
      if (all_pairs) {
        exprs = all_pairs_expressions();
      } else {
        std::stringstream ss(expr);
        std::string s;
        while (std::getline(ss, s, ';')) {
          const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
          if (a != std::string::npos) exprs.push_back(s.substr(a, b - a + 1));  // trimmed: reports name each as written
        }
      }
      eo.keep_grid(!grid.empty());
      const Composer composer(f, given_compose_keys(sub));
      std::unique_ptr<Progress> bar;
      const auto rep = evaluate_composition(
          composer, exprs, eo, c.seed,
          [&](size_t i, size_t count) {
            if (bar) bar->finish();
            bar = std::make_unique<Progress>("compose " + std::to_string(i + 1) + "/" + std::to_string(count),
                                             eo.n() * f.sample().restarts() * f.sample().langevin().steps(), 5.0);
          },
          [&](int64_t done, int64_t) { bar->update(done); });
      if (bar) bar->finish();
      json j = rep.to_json();
      j["command"] = command_line();
      if (c.json_out != "-") std::fputs(rep.to_text().c_str(), stdout);
      if (!grid.empty()) write_png_grid(grid, rep.grid, rep.grid_cols);
      write_json(c.json_out, j);
      return 0;
    };
  });
}

void add_compose_calibrate(CLI::App* parent, Action& run) {
  auto* sub = parent->add_subcommand("calibrate", "Fit an attribute model's temperature on its validation split (stored in its card)");
  static std::string model;
  static Common c;
  sub->add_option("--model", model, "Attribute model folder")->required();
  add_common(sub, c, true);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      const json cal = calibrate_attribute(model);
      std::printf("%s: temperature %.4f (val NLL %.4f -> %.4f, accuracy %.4f, n %lld)\n", model.c_str(),
                  cal["temperature"].get<double>(), cal["nll_t1"].get<double>(), cal["nll"].get<double>(),
                  cal["accuracy"].get<double>(), (long long)cal["n"].get<int64_t>());
      write_json(c.json_out, cal);
      return 0;
    };
  });
}

}  // namespace

void add_compose(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("compose", "Generate samples of an energy expression, e.g. \"digit=3 & thick\"");
  sub->footer(std::string(kLanguage) +
              "\nSampling: the shared Langevin sampler on guidance*E_expr + prior, 200 steps, step 0.01\n"
              "-> 0.001 and noise 0.1 -> 0.002 (geometric). Chains start (--init data) from random\n"
              "MNIST fit-split images with N(0, 0.5^2) noise, clipped: short-run chains from noise\n"
              "(--init uniform) collapse onto blank or blob images with the score-matching prior.\n"
              "Of guidance 1, 5 and 100 only 100 made chains change digit identity (measured by eye);\n"
              "200 with --not-weight 0.005 raised OR and kept NOT on a proxy judge. Two chains per\n"
              "sample (--restarts 2); the one whose expression energy (prior excluded) is lower is kept.\n"
              "With a noise-conditional --prior (models/mnist-ncsn) the sampler is annealed Langevin from\n"
              "uniform noise (--sampler auto, --init auto), the atoms read the prior's Tweedie estimate at\n"
              "each level (--guide-on denoised), and the prior's card supplies the settings tuned for it\n"
              "(its \"compose\" entry; flags given here win; the sidecar lists them as from_prior_card).\n"
              "The grid's JSON sidecar (GRID.json) records everything needed to reproduce it.\n\n"
              "Example: ebm compose --expr \"digit=3 & thick\" --n 64 --out grid.png --save samples.npy");
  static std::string expr, out, save;
  static ComposerOptions f;
  static int64_t& n = f.n();
  static Common c;
  sub->add_option("--expr", expr, "Expression, e.g. \"digit=3 & thick\" (required)");
  sub->add_option("--n", n, "Number of samples")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--out", out, "PNG grid of the samples (required)");
  sub->add_option("--save", save, "Also save the samples as a tensor (.npy/.idx)");
  add_composer_flags(sub, f);
  add_common(sub, c, true);
  add_compose_eval(sub, run);
  add_compose_calibrate(sub, run);
  sub->callback([&run, sub] {
    for (auto* s : sub->get_subcommands())
      if (s->parsed()) return;
    require(!expr.empty() && !out.empty(), "compose needs --expr and --out (or: ebm compose eval --help)");
    run = [sub] {
      apply_common(c);
      check_outputs({out, sidecar_path(out), save, c.json_out});
      if (!save.empty()) tensor_format(save);
      const Composer composer(f, given_compose_keys(sub));
      const Expr ex = parse_expr(expr);
      composer.resolve(ex);
      std::unique_ptr<Progress> bar;  // the total (annealed or not, restarts from the card) is known once sampling starts
      const auto s = composer.sample(ex, n, c.seed, [&](int64_t done, int64_t total) {
        if (!bar) bar = std::make_unique<Progress>("compose", total, 5.0);
        bar->update(done);
      });
      if (bar) bar->finish();
      write_png_grid(out, s.x);
      if (!save.empty()) write_tensor(save, s.x);
      json rep{{"expr", expr}, {"parsed", ex.str()}, {"n", n}, {"out", out}, {"save", save},
               {"mean_energy", s.energy.mean().item<double>()}, {"command", command_line()}};
      rep.update(composer.describe(c.seed));
      write_json(sidecar_path(out), rep);
      if (!c.json_out.empty()) write_json(c.json_out, rep);
      if (c.json_out != "-")
        std::printf("wrote %lld samples of %s to %s (+ %s)\n", (long long)n, ex.str().c_str(), out.c_str(),
                    sidecar_path(out).c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
