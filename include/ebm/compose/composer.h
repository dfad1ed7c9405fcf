// composer.h: compositional generation and its evaluation as `ebm compose`
// and `ebm compose eval` run them. The library owns every default (the
// shipped attribute models and prior, guidance, the composition sampler,
// restarts and their selection, chain starts) and the judging rules; the CLI
// binds flags to ComposerOptions / ComposeEvalOptions and prints the report.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ebm/compose/attributes.h"
#include "ebm/compose/quality.h"

namespace ebm {

struct ComposerOptions {
  /// Samples `ebm compose` draws (one grid).
  TORCH_ARG(int64_t, n) = 64;
  /// Attribute models whose values are the expression's atoms.
  TORCH_ARG(std::vector<std::string>, attr_models) =
      std::vector<std::string>{"models/mnist-attr-digit", "models/mnist-attr-thickness"};
  /// Unconditional prior energy added once ("none" or "" = no prior).
  TORCH_ARG(std::string, prior) = "models/mnist-dsm";
  /// How atoms combine (guidance, NOT weight, OR temperature, prior weight).
  TORCH_ARG(ComposeOptions, compose) = {};
  /// The chains (sampler, restarts, batch, init noise).
  TORCH_ARG(ComposeSampleOptions, sample) = {};
  /// Which energy picks among restarts: "expr" (the expression alone, no prior,
  /// guidance 1) | "total" (what was sampled). The prior's energy spreads over
  /// hundreds of nats between images and would otherwise decide the choice.
  TORCH_ARG(std::string, select) = "expr";
  /// Chain starts: "data" (random images of init_data's fit split + N(0,
  /// init_noise^2), clipped: never the val/test images judges use) | "uniform"
  /// | "auto" (uniform for the annealed sampler, which starts from pure noise;
  /// data for the one-temperature one).
  TORCH_ARG(std::string, init) = "auto";
  TORCH_ARG(std::string, init_data) = "mnist";
  /// Data directory ("" = ebm::data_dir()).
  TORCH_ARG(std::string, root) = "";
};

/// Composition with a fixed set of attribute models and prior (loaded once).
class Composer {
 public:
  /// Loads the attribute models and the prior; UsageError on a bad select/init.
  /// A prior's card may carry a "compose" entry: the settings composition was
  /// tuned with on that prior, e.g. models/mnist-ncsn's
  ///   "compose": {"guidance": 5, "not_weight": 0.2, "epsilon": 5e-05}
  /// Its keys (guidance, not_weight, or_temperature, prior_weight, guide_on,
  /// restarts, init, and the annealed sampler's sigma_max, sigma_min, levels,
  /// steps_per_level, epsilon, corrector) replace o's values, except those
  /// named in `given` (set explicitly by the caller). DataError on a malformed entry.
  explicit Composer(ComposerOptions o, const std::set<std::string>& given = {});
  const ComposerOptions& options() const { return o_; }
  const AttributeSet& attributes() const { return attrs_; }
  /// Resolve every atom of `e` now (UsageError listing what exists otherwise).
  void resolve(const Expr& e) const;
  /// n samples of `e`; `on_step(done, total)` counts chain steps.
  ComposeSamples sample(const Expr& e, int64_t n, uint64_t seed,
                        const std::function<void(int64_t, int64_t)>& on_step = {}) const;
  /// The keys the prior's card supplied (a JSON array, empty without any).
  const nlohmann::json& from_card() const { return from_card_; }
  /// Everything needed to reproduce a sample: models with hashes and
  /// calibration, prior, weights, sampler, starts, seed.
  nlohmann::json describe(uint64_t seed) const;

 private:
  ComposerOptions o_;
  AttributeSet attrs_;
  EnergyPtr prior_;
  std::string sampler_;         // "langevin" | "annealed": o_.sample().sampler() resolved for the prior
  std::string init_;            // "data" | "uniform": o_.init() resolved
  nlohmann::json from_card_ = nlohmann::json::array();
  mutable torch::Tensor pool_;  // init "data": the fit split, loaded on first use
};

struct ComposeEvalOptions {
  /// Samples per expression.
  TORCH_ARG(int64_t, n) = 100;
  /// Digit judge: a classifier never used for generation.
  TORCH_ARG(std::string, judge) = "models/mnist-judge";
  /// Dataset whose test split is the diversity reference.
  TORCH_ARG(std::string, real_data) = "mnist";
  /// Keep the first min(10, n) samples of each expression (for a grid).
  TORCH_ARG(bool, keep_grid) = false;
  /// Fréchet distance in the judge's features against real_data images with
  /// the attributes each expression fixes (fixed_attributes), its real-vs-real
  /// reference, and kNN agreement on fixed digits (quality.h).
  TORCH_ARG(QualityOptions, quality) = {};
};

/// The 40 expressions of the all-pairs table: digit=d alone (10, the
/// single-attribute baseline), then digit=d & thickness=t for t in thin,
/// medium, thick (30), in that order.
std::vector<std::string> all_pairs_expressions();

/// Judges for samples of `attrs`: the digit classifier at `judge_path` and the
/// stroke-thickness terciles of the thickness model's card. UsageError if the
/// judge is one of the generators (same SHA-256).
Judges make_judges(const AttributeSet& attrs, const std::string& judge_path);

struct ComposeEvalReport {
  int64_t n = 0;
  std::string judge, judge_hash;
  nlohmann::json generation;              ///< Composer::describe()
  /// judge_samples() + "expr", "mean_energy" + QualityReport::to_json()
  /// ("frechet", "frechet_reference", "frechet_ratio", "frechet_real",
  /// "knn_agreement", "knn_judge").
  std::vector<nlohmann::json> rows;
  std::vector<QualityReport> quality;     ///< per row, as merged into it
  /// Mean success over the expressions that contain an AND (the pairs).
  std::optional<double> mean_success_rate;
  bool all_pairs = false;                 ///< rows are all_pairs_expressions()
  torch::Tensor grid;                     ///< [R*min(10,n),1,28,28] with keep_grid
  int64_t grid_cols = 0;

  /// One expression: its row merged at the top level; several: "pairs".
  nlohmann::json to_json() const;
  /// The 10 x 4 table for all pairs (and, when measured, the same table of
  /// Fréchet ratios and of kNN agreement), else one line per expression.
  std::string to_text() const;
};

/// Sample and judge each expression (seed + i for the i-th).
/// `on_expr(i, count)` is called before each expression; `on_step` as in
/// Composer::sample.
ComposeEvalReport evaluate_composition(const Composer& c, const std::vector<std::string>& exprs,
                                       const ComposeEvalOptions& o, uint64_t seed,
                                       const std::function<void(size_t, size_t)>& on_expr = {},
                                       const std::function<void(int64_t, int64_t)>& on_step = {});

/// True if `e` contains an AND node anywhere.
bool has_and(const Expr& e);

}  // namespace ebm
