// ebm defend eval: attacks, purification and the three threat models.
// Thin: parse, call the library (ebm/defend.h), report.
#include <cstdio>
#include <memory>
#include <set>

#include <torch/torch.h>

#include "cli.h"
#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/defend/defend.h"
#include "ebm/core/models.h"

namespace ebm::cli {
namespace {

const char* kDefendFooter = R"(Threat models, one row each in the report (field "threat"):
  undefended  the attack on the bare classifier, no purification (purify_steps 0).
  grey-box    the same adversarial images, then purified and classified. The attacker
              never saw the purifier, so this OVERSTATES robustness; it shows what
              purification undoes, not what it withstands.
  adaptive    (--attack bpda-eot) PGD through the purifier: the classifier's gradient
              at the purified image is passed straight through the purifier (BPDA) and
              averaged over --eot purification draws (EOT). Only this row is a
              robustness claim. It costs ~ n * attack-steps * eot * (purify steps + 1)
              gradient evaluations per purification length: start with a small --n.

Purification (Langevin from the input, the shared sampler):
  x0 = clamp(x + init_noise * N(0,I), 0, 1), then steps of
  x <- clamp(x - step_size * grad E(x) + noise * N(0,I), 0, 1);
  the classifier's logits are averaged over --draws purification draws.
  0 steps = no purification at all. Purifier settings not given on the command line
  come from the "purify" entry of the --ebm model's card.json, else the defaults below.

Attacks (pixels in [0,1]; L-inf attacks stay exactly inside the eps-ball):
  fgsm      one signed-gradient step of eps.
  pgd       --attack-steps steps of --attack-step-size, random start, --restarts;
            defaults = MadryLab MNIST challenge (eps 0.3, 40 x 0.01, random start).
  cw        Carlini-Wagner L2 (unbounded in L-inf; --eps is ignored, L2 is reported).
  bpda-eot  adaptive PGD (same settings) through the purifier; also reports the pgd
            undefended and grey-box rows.

Gradient-masking sanity checks (Athalye et al. 2018), on the first --sanity-n images,
with each threat's PGD at the longest purification: accuracy must not rise with eps
(eps/3, 2eps/3, eps), an eps = 1 attack must reach about 0, and more attack steps
(steps/4 vs steps) must not raise accuracy. Failures are listed in "sanity_failed"
and printed. Grey-box rows are expected to fail "unbounded".

JSON (--json): {"attack","eps","n","clean_accuracy",
  "results":[{"threat","attack","purify_steps","clean_accuracy","robust_accuracy",...}],
  "sanity_checks":[...],"sanity_failed":[...],"purifier":{...},"attack_options":{...}}

Examples:
  ebm defend eval --attack pgd --n 500 --json pgd.json --plots plots/      # undefended + grey-box
  ebm defend eval --attack bpda-eot --purify-steps 0,10 --eot 8 --n 100 --json bpda.json
  ebm defend eval --attack cw --n 200 --json cw.json)";

void add_defend_eval(CLI::App* parent, Action& run) {
  auto* sub = parent->add_subcommand(
      "eval", "Attack test images; report clean and robust accuracy per purification length and threat model");
  // Flags bind to DefendEvalOptions (and its PgdOptions, CwOptions and
  // PurifyOptions), so every default shown is the library's.
  struct Flags {
    std::string plots, markdown;
    DefendEvalOptions o;
    bool no_random_start = false, no_sanity = false;
    Common c;
  };
  auto f = std::make_shared<Flags>();
  auto& o = f->o;
  sub->add_option("--classifier", o.classifier(), "Classifier to attack (native folder or TorchScript)")->capture_default_str();
  sub->add_option("--ebm", o.purifier(), "Energy model of the purifier")->capture_default_str();
  sub->add_option("--data", o.data(), "Dataset to attack")->capture_default_str();
  sub->add_option("--split", o.split(), "test (report) | val (tune the purifier without touching test)")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "val"}));
  sub->add_option("--attack", o.attack(), "fgsm | pgd | cw | bpda-eot")
      ->capture_default_str()
      ->check(CLI::IsMember({"fgsm", "pgd", "cw", "bpda-eot"}));
  sub->add_option("--eps", o.eps(), "L-inf radius in [0,1] pixel units")->capture_default_str();
  sub->add_option("--purify-steps", o.purify_steps(), "Purification lengths, comma-separated (0 = none)")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--n", o.n(), "Test images (the first n)")->capture_default_str()->check(CLI::PositiveNumber);
  sub->add_option("--batch", o.batch(), "Images per attack batch")->capture_default_str()->check(CLI::PositiveNumber);
  const char* g = "Attack";
  sub->add_option("--attack-steps", o.pgd().steps(), "PGD / BPDA steps")->capture_default_str()->group(g);
  sub->add_option("--attack-step-size", o.pgd().step_size(), "PGD signed step")->capture_default_str()->group(g);
  sub->add_option("--restarts", o.pgd().restarts(), "PGD random restarts")->capture_default_str()->group(g);
  sub->add_flag("--no-random-start", f->no_random_start, "PGD starts at the clean image")->group(g);
  sub->add_option("--eot", o.eot(), "EOT purification draws per BPDA gradient")->capture_default_str()->group(g);
  sub->add_option("--cw-confidence", o.cw().confidence(), "CW kappa")->capture_default_str()->group(g);
  sub->add_option("--cw-c", o.cw().c(), "CW initial constant c")->capture_default_str()->group(g);
  sub->add_option("--cw-search", o.cw().binary_search_steps(), "CW binary-search rounds over c")->capture_default_str()->group(g);
  sub->add_option("--cw-steps", o.cw().steps(), "CW Adam steps per round")->capture_default_str()->group(g);
  sub->add_option("--cw-lr", o.cw().lr(), "CW Adam learning rate")->capture_default_str()->group(g);
  // Purifier: flags given > the --ebm card's "purify" entry > PurifyOptions defaults.
  const char* gp = "Purifier (defaults: the --ebm card's \"purify\" entry, else these)";
  auto& p = o.purify();
  sub->add_option("--purify-step-size", p.step_size(), "Langevin step size")->capture_default_str()->group(gp);
  sub->add_option("--purify-noise", p.noise(), "Langevin noise std per step")->capture_default_str()->group(gp);
  sub->add_option("--init-noise", p.init_noise(), "Gaussian noise std added before the chain")->capture_default_str()->group(gp);
  add_schedule_flag(sub, "--purify-step-schedule", p.step_schedule(), "constant | linear:F | cosine:F | geometric:F")->group(gp);
  add_schedule_flag(sub, "--purify-noise-schedule", p.noise_schedule(), "Same forms")->group(gp);
  sub->add_option("--purify-grad-clip", p.grad_clip(), "Cap on |grad E| (0 = off)")->capture_default_str()->group(gp);
  sub->add_option("--draws", p.draws(), "Purification draws whose logits are averaged")->capture_default_str()->group(gp);
  const char* gs = "Sanity checks";
  sub->add_flag("--no-sanity", f->no_sanity, "Skip the gradient-masking sanity checks")->group(gs);
  sub->add_option("--sanity-n", o.sanity_n(), "Images used by the sanity checks")->capture_default_str()->group(gs);
  sub->add_option("--sanity-steps", o.sanity_steps(), "Purification length they use (-1 = the longest)")->capture_default_str()->group(gs);
  sub->add_option("--sanity-tolerance", o.sanity_tolerance(), "Allowed accuracy rise for purified threats")->capture_default_str()->group(gs);
  sub->add_option("--markdown", f->markdown, "Also write the results table as Markdown");
  sub->add_option("--plots", f->plots, "Write the accuracy-vs-purify-steps curve as DIR/defend-<attack>.png");
  add_common(sub, f->c, true);
  sub->footer(kDefendFooter);
  sub->callback([&run, f, sub] {
    run = [f, sub] {
      apply_common(f->c);
      check_outputs({f->markdown, f->c.json_out});  // before any work, and before any one of them is written
      auto clf = load_model(f->o.classifier());
      auto ebm = load_model(f->o.purifier());
      if (clf->num_classes() <= 0)
        throw UsageError("--classifier '" + f->o.classifier() + "' is not a classifier (it has no logits)");
      // Purifier: flags given > the --ebm card's "purify" entry > PurifyOptions defaults.
      static const std::pair<const char*, const char*> kPurifyFlags[] = {
          {"--purify-step-size", "step_size"}, {"--purify-noise", "noise"},          {"--init-noise", "init_noise"},
          {"--purify-grad-clip", "grad_clip"}, {"--draws", "draws"},                 {"--purify-step-schedule", "step_schedule"},
          {"--purify-noise-schedule", "noise_schedule"}};
      std::set<std::string> given;
      for (const auto& [flag, key] : kPurifyFlags)
        if (sub->count(flag) > 0) given.insert(key);
      auto& o = f->o;
      o.purify(purify_options_from_card(load_card(f->o.purifier()), o.purify(), given));
      o.pgd().random_start(!f->no_random_start);
      o.sanity(!f->no_sanity).seed(f->c.seed).progress(!f->c.quiet);
      check_defend_options(o);  // before the (slow) work, so typos fail fast
      const DefendReport report = defend_eval(*clf, *ebm, o);
      json rep = report.to_json();
      rep["classifier"] = f->o.classifier();
      rep["ebm"] = f->o.purifier();
      rep["command"] = command_line();
      rep["models"] = {{f->o.classifier(), model_hash(f->o.classifier())}, {f->o.purifier(), model_hash(f->o.purifier())}};
      if (!f->plots.empty()) {
        make_dirs(f->plots);
        const std::string path = f->plots + "/defend-" + o.attack() + ".png";
        write_defend_plot(report, path);
        std::fprintf(stderr, "wrote %s\n", path.c_str());
      }
      write_json(f->c.json_out, rep);
      if (!f->markdown.empty()) write_file_atomic(f->markdown, report.to_markdown());
      std::FILE* to = f->c.json_out == "-" ? stderr : stdout;
      std::fputs(report.to_text().c_str(), to);
      std::fflush(to);
      return 0;
    };
  });
}

}  // namespace

void add_defend(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("defend", "Adversarial attacks and EBM purification (see `ebm defend eval --help`)");
  sub->require_subcommand(1);
  add_defend_eval(sub, run);
}

}  // namespace ebm::cli
