// defend.h: `ebm defend eval`: attacks against a classifier with and without
// EBM purification, under three threat models, with gradient-masking sanity
// checks. An evaluation that does not fool itself:
//
//   undefended  the attack on the bare classifier; no purification (purify_steps 0)
//   grey-box    the same adversarial images (made against the bare classifier),
//               then purified and classified: the attacker ignores the purifier
//   adaptive    BPDA+EOT PGD through the purifier (attacks.h): the attacker
//               knows the purifier and averages over its randomness
//
// Grey-box numbers overstate robustness by construction; only the adaptive row
// is a robustness claim. The sanity checks (Athalye et al. 2018; Carlini et
// al. 2019) run the L-inf PGD of each threat on the first `sanity_n` images:
//   eps_monotone    robust accuracy does not rise as eps grows (eps/3, 2eps/3, eps)
//   unbounded       eps = 1 (PGD from the clean image, steps of 2.5/steps) drives
//                   accuracy to about 0 (<= unbounded_max)
//   steps_monotone  more attack steps never raise accuracy (steps/4, steps)
// A failed check is reported (and, for grey-box, expected: it is the sign
// that the attacker did not see the defence).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>

#include <string>
#include <vector>

#include "ebm/defend/attacks.h"
#include "ebm/core/energy.h"
#include "ebm/defend/purify.h"

namespace ebm {

struct DefendEvalOptions {
  /// The shipped models `ebm defend eval` loads when none are named: the
  /// classifier under attack and the energy model of the purifier.
  TORCH_ARG(std::string, classifier) = "models/mnist-clf";
  TORCH_ARG(std::string, purifier) = "models/mnist-purifier";
  /// Dataset; its TEST split is attacked by default.
  TORCH_ARG(std::string, data) = "mnist";
  /// "test" for reported figures; "val" (held out from training, disjoint from
  /// test) for tuning the purifier without touching the test images.
  TORCH_ARG(std::string, split) = "test";
  /// First n test images.
  TORCH_ARG(int64_t, n) = 500;
  /// Images per attack batch.
  TORCH_ARG(int64_t, batch) = 100;
  /// "fgsm", "pgd", "cw" or "bpda-eot" (adaptive; also reports the pgd
  /// undefended and grey-box rows, which cost little next to it).
  TORCH_ARG(std::string, attack) = "pgd";
  /// L-inf radius of fgsm/pgd/bpda-eot.
  TORCH_ARG(double, eps) = 0.3;
  /// PGD settings (eps is taken from `eps`); also the PGD inside bpda-eot.
  TORCH_ARG(PgdOptions, pgd) = {};
  TORCH_ARG(CwOptions, cw) = {};
  /// EOT samples per BPDA gradient.
  TORCH_ARG(int64_t, eot) = 8;
  /// Purifier settings; its `steps` is replaced by each entry of purify_steps.
  TORCH_ARG(PurifyOptions, purify) = {};
  /// Purification lengths of the curve; 0 = the undefended row.
  TORCH_ARG(std::vector<int64_t>, purify_steps) = std::vector<int64_t>{0, 10, 50, 100, 200};
  /// Run the gradient-masking sanity checks.
  TORCH_ARG(bool, sanity) = true;
  /// Images used by the sanity checks (the first ones of the n).
  TORCH_ARG(int64_t, sanity_n) = 100;
  /// Purification length of the defended sanity checks; -1 = the largest of purify_steps.
  TORCH_ARG(int64_t, sanity_steps) = -1;
  /// Allowed rise in accuracy before a monotonicity check fails, for the
  /// stochastic (purified) threats; the undefended classifier gets 0.
  TORCH_ARG(double, sanity_tolerance) = 0.03;
  /// "About 0" for the unbounded check.
  TORCH_ARG(double, unbounded_max) = 0.05;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Progress lines on stderr.
  TORCH_ARG(bool, progress) = true;
};

/// Check the options; throws UsageError naming the bad value.
void check_defend_options(const DefendEvalOptions& o);

/// One threat at one purification length.
struct DefendRow {
  std::string threat;  // "undefended", "grey-box" or "adaptive"
  std::string attack;  // "fgsm", "pgd", "cw" or "bpda-eot"
  int64_t purify_steps = 0;
  double clean_accuracy = 0, robust_accuracy = 0;
  /// The row's other measurements (seconds, max_linf, mean_l2, eot, ...).
  nlohmann::json extra = nlohmann::json::object();
};

/// One gradient-masking sanity check (see the top of this file).
struct DefendSanityCheck {
  std::string name;    // eps_monotone, unbounded, steps_monotone
  std::string threat;
  int64_t purify_steps = 0;
  bool passed = false;
  nlohmann::json points = nlohmann::json::array();  // [{"eps"|"steps", "robust_accuracy"}, ...]
  /// n, attack, tolerance, rule, ...
  nlohmann::json extra = nlohmann::json::object();
};

/// What defend_eval measures, with its writers.
struct DefendReport {
  std::string attack, data, split;
  double eps = 0;        // NaN for cw (unbounded L2 attack)
  int64_t n = 0;
  double clean_accuracy = 0;  // of the bare classifier
  std::vector<DefendRow> rows;
  std::vector<DefendSanityCheck> sanity;
  /// The settings and bookkeeping: attack_options, purifier, seed, seconds, sanity_note.
  nlohmann::json details = nlohmann::json::object();

  /// Names of the failed checks, "name (threat)".
  std::vector<std::string> sanity_failed() const;
  /// {"attack","eps","n","data","split","clean_accuracy",
  ///  "results":[{"threat","attack","purify_steps","clean_accuracy","robust_accuracy",...}],
  ///  "sanity_checks":[{"name","threat","purify_steps","points","passed",...}],
  ///  "sanity_failed":[...], plus details}
  nlohmann::json to_json() const;
  /// Parse to_json()'s output; DataError naming the missing field.
  static DefendReport from_json(const nlohmann::json& j);
  /// A heading, one row per threat and purification length, and the sanity checks.
  std::string to_text() const;
  /// The same rows as a Markdown table.
  std::string to_markdown() const;
};

/// Run the evaluation. clf: classifier (num_classes() > 0); ebm: the purifier's energy.
DefendReport defend_eval(Energy& clf, Energy& ebm, const DefendEvalOptions& o);

/// Robust-accuracy-vs-purify-steps curve (one line per threat, plus clean
/// accuracy after purification) as a PNG at `path`.
void write_defend_plot(const DefendReport& report, const std::string& path);

}  // namespace ebm
