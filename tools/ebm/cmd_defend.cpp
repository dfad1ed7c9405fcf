// ebm defend eval: attacks, purification and the three threat models.
// Thin: parse, call the library (ebm/defend.h), report.
#include <cstdio>
#include <memory>

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

void add_eval(CLI::App* parent, Action& run) {
  auto* sub = parent->add_subcommand(
      "eval", "Attack test images; report clean and robust accuracy per purification length and threat model");
  struct Flags {
    std::string classifier = "models/mnist-clf", ebm = "models/mnist-purifier", plots;
    std::string step_schedule, noise_schedule;
    DefendEvalOptions o;
    double attack_step_size = 0.01, step_size = -1, noise = -1, init_noise = -1, grad_clip = -1;
    int64_t attack_steps = 40, restarts = 1, draws = -1;
    bool no_random_start = false, no_sanity = false;
    double cw_confidence = 0, cw_c = 1, cw_lr = 0.05;
    int64_t cw_search = 5, cw_steps = 100;
    std::vector<int64_t> purify_steps{0, 10, 50, 100, 200};
    std::string attack = "pgd", data = "mnist", split = "test";
    double eps = 0.3, sanity_tol = 0.03;
    int64_t n = 500, batch = 100, eot = 8, sanity_n = 100, sanity_steps = -1;
    Common c;
  };
  auto f = std::make_shared<Flags>();
  sub->add_option("--classifier", f->classifier, "Classifier to attack (native folder or TorchScript)")->capture_default_str();
  sub->add_option("--ebm", f->ebm, "Energy model of the purifier")->capture_default_str();
  sub->add_option("--data", f->data, "Dataset to attack")->capture_default_str();
  sub->add_option("--split", f->split, "test (report) | val (tune the purifier without touching test)")
      ->capture_default_str();
  sub->add_option("--attack", f->attack, "fgsm | pgd | cw | bpda-eot")->capture_default_str();
  sub->add_option("--eps", f->eps, "L-inf radius in [0,1] pixel units")->capture_default_str();
  sub->add_option("--purify-steps", f->purify_steps, "Purification lengths, comma-separated (0 = none)")
      ->delimiter(',')->capture_default_str();
  sub->add_option("--n", f->n, "Test images (the first n)")->capture_default_str();
  sub->add_option("--batch", f->batch, "Images per attack batch")->capture_default_str();
  auto* g = "Attack";
  sub->add_option("--attack-steps", f->attack_steps, "PGD / BPDA steps")->capture_default_str()->group(g);
  sub->add_option("--attack-step-size", f->attack_step_size, "PGD signed step")->capture_default_str()->group(g);
  sub->add_option("--restarts", f->restarts, "PGD random restarts")->capture_default_str()->group(g);
  sub->add_flag("--no-random-start", f->no_random_start, "PGD starts at the clean image")->group(g);
  sub->add_option("--eot", f->eot, "EOT purification draws per BPDA gradient")->capture_default_str()->group(g);
  sub->add_option("--cw-confidence", f->cw_confidence, "CW kappa")->capture_default_str()->group(g);
  sub->add_option("--cw-c", f->cw_c, "CW initial constant c")->capture_default_str()->group(g);
  sub->add_option("--cw-search", f->cw_search, "CW binary-search rounds over c")->capture_default_str()->group(g);
  sub->add_option("--cw-steps", f->cw_steps, "CW Adam steps per round")->capture_default_str()->group(g);
  sub->add_option("--cw-lr", f->cw_lr, "CW Adam learning rate")->capture_default_str()->group(g);
  const PurifyOptions pd;
  auto* gp = "Purifier (default: the --ebm card's \"purify\" entry, else the value shown)";
  sub->add_option("--purify-step-size", f->step_size, "Langevin step size [" + std::to_string(pd.step_size()) + "]")->group(gp);
  sub->add_option("--purify-noise", f->noise, "Langevin noise std per step [" + std::to_string(pd.noise()) + "]")->group(gp);
  sub->add_option("--init-noise", f->init_noise, "Gaussian noise std added before the chain [" + std::to_string(pd.init_noise()) + "]")->group(gp);
  sub->add_option("--purify-step-schedule", f->step_schedule, "constant | linear:F | cosine:F | geometric:F [constant]")->group(gp);
  sub->add_option("--purify-noise-schedule", f->noise_schedule, "Same forms [constant]")->group(gp);
  sub->add_option("--purify-grad-clip", f->grad_clip, "Cap on |grad E| (0 = off) [0]")->group(gp);
  sub->add_option("--draws", f->draws, "Purification draws whose logits are averaged [1]")->group(gp);
  auto* gs = "Sanity checks";
  sub->add_flag("--no-sanity", f->no_sanity, "Skip the gradient-masking sanity checks")->group(gs);
  sub->add_option("--sanity-n", f->sanity_n, "Images used by the sanity checks")->capture_default_str()->group(gs);
  sub->add_option("--sanity-steps", f->sanity_steps, "Purification length they use (-1 = the longest)")->capture_default_str()->group(gs);
  sub->add_option("--sanity-tolerance", f->sanity_tol, "Allowed accuracy rise for purified threats")->capture_default_str()->group(gs);
  sub->add_option("--plots", f->plots, "Write the accuracy-vs-purify-steps curve as DIR/defend-<attack>.png");
  add_common(sub, f->c, true);
  sub->footer(kDefendFooter);
  sub->callback([&run, f] {
    run = [f] {
      apply_common(f->c);
      auto clf = load_model(f->classifier);
      auto ebm = load_model(f->ebm);
      if (clf->num_classes() <= 0)
        throw UsageError("--classifier '" + f->classifier + "' is not a classifier (it has no logits)");
      // Purifier: flags > the --ebm card's "purify" entry > PurifyOptions defaults.
      const json card = load_card(f->ebm);
      PurifyOptions p = purify_options_from_card(card);
      if (f->step_size >= 0) p.step_size(f->step_size);
      if (f->noise >= 0) p.noise(f->noise);
      if (f->init_noise >= 0) p.init_noise(f->init_noise);
      if (f->grad_clip >= 0) p.grad_clip(f->grad_clip);
      if (f->draws >= 0) p.draws(f->draws);
      if (!f->step_schedule.empty()) p.step_schedule(Schedule::parse(f->step_schedule));
      if (!f->noise_schedule.empty()) p.noise_schedule(Schedule::parse(f->noise_schedule));
      auto o = DefendEvalOptions()
                   .data(f->data).split(f->split).n(f->n).batch(f->batch).attack(f->attack).eps(f->eps)
                   .pgd(PgdOptions().steps(f->attack_steps).step_size(f->attack_step_size)
                            .random_start(!f->no_random_start).restarts(f->restarts))
                   .cw(CwOptions().confidence(f->cw_confidence).c(f->cw_c).binary_search_steps(f->cw_search)
                           .steps(f->cw_steps).lr(f->cw_lr))
                   .eot(f->eot).purify(p).purify_steps(f->purify_steps)
                   .sanity(!f->no_sanity).sanity_n(f->sanity_n).sanity_steps(f->sanity_steps)
                   .sanity_tolerance(f->sanity_tol).seed(f->c.seed).progress(!f->c.quiet);
      check_defend_options(o);  // before the (slow) work, so typos fail fast
      json rep = defend_eval(*clf, *ebm, o);
      rep["classifier"] = f->classifier;
      rep["ebm"] = f->ebm;
      rep["command"] = command_line();
      if (!f->plots.empty()) {
        make_dirs(f->plots);
        const std::string path = f->plots + "/defend-" + f->attack + ".png";
        write_defend_plot(rep, path);
        std::fprintf(stderr, "wrote %s\n", path.c_str());
      }
      write_json(f->c.json_out, rep);
      std::FILE* to = f->c.json_out == "-" ? stderr : stdout;
      std::fprintf(to, "%s, attack %s%s, n = %lld, clean accuracy %.4f\n", f->data.c_str(), f->attack.c_str(),
                   f->attack == "cw" ? "" : (" eps " + std::to_string(f->eps).substr(0, 5)).c_str(),
                   (long long)rep["n"].get<int64_t>(), rep["clean_accuracy"].get<double>());
      std::fprintf(to, "%-11s %-9s %12s %15s %16s\n", "threat", "attack", "purify_steps", "clean_accuracy", "robust_accuracy");
      for (const auto& r : rep["results"])
        std::fprintf(to, "%-11s %-9s %12lld %15.4f %16.4f\n", r["threat"].get<std::string>().c_str(),
                     r["attack"].get<std::string>().c_str(), (long long)r["purify_steps"].get<int64_t>(),
                     r["clean_accuracy"].get<double>(), r["robust_accuracy"].get<double>());
      for (const auto& c : rep["sanity_checks"])
        std::fprintf(to, "sanity %-15s %-11s %s  %s\n", c["name"].get<std::string>().c_str(),
                     c["threat"].get<std::string>().c_str(), c["passed"].get<bool>() ? "ok    " : "FAILED",
                     c["points"].dump().c_str());
      std::fflush(to);
      return 0;
    };
  });
}

}  // namespace

void add_defend(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("defend", "Adversarial attacks and EBM purification (see `ebm defend eval --help`)");
  sub->require_subcommand(1);
  add_eval(sub, run);
}

}  // namespace ebm::cli
