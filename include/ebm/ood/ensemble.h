// ensemble.h (ood): fitting an ensemble detector. The format and its loader
// are in core/ensemble.h; this half scores the in-distribution validation
// split to standardise each member, so it needs datasets. An ensemble is a
// model made of other models, stored as a folder with only a card.json
// ("format": "ensemble"):
//
//   E(x) = sum_i w_i * (E_i(x) - shift_i) / scale_i
//
// the product of experts of compose.h (SumEnergy of AffineEnergy terms), with
// each member standardised on in-distribution VALIDATION images (shift = mean,
// scale = sd of its energy there), so that members of very different scales
// (a score-matching energy near -900, a classifier free energy near -15)
// count equally when w_i = 1. Classifier members contribute their free
// energy at the temperature on their card. The ensemble is not a classifier.
//
// Why: for OOD detection two energies that err on different images are
// better summed than either alone (README, "OOD detection"). Members are
// referenced by paths relative to the ensemble folder and pinned by their
// model_hash: loading refuses a member that changed since the fit, because
// its standardisation would be stale.
#pragma once

#include <torch/arg.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ebm/core/common.h"
#include "ebm/core/energy.h"

namespace ebm {

using json = nlohmann::json;

struct EnsembleOptions {
  /// Member model paths (native folders or TorchScript files); at least one.
  TORCH_ARG(std::vector<std::string>, members) = {};
  /// One weight per member; empty = all 1.
  TORCH_ARG(std::vector<double>, weights) = {};
  /// In-distribution dataset whose `split` fits the standardisation.
  TORCH_ARG(std::string, data) = "mnist";
  /// "val" (default) or "fit"; never "test", which is what reports score.
  TORCH_ARG(std::string, split) = "val";
  /// At most n images of the split (-1 = all).
  TORCH_ARG(int64_t, n) = -1;
  /// Images per forward pass.
  TORCH_ARG(int64_t, batch) = kScoringBatch;
  /// The score `ood eval` uses for the ensemble when none is named (its card's "default_score").
  TORCH_ARG(std::string, default_score) = "energy";
  /// Data directory ("" = ebm::data_dir()).
  TORCH_ARG(std::string, root) = "";
};

/// Score the split with every member and build the ensemble card:
///   {"format":"ensemble", "members":[{"model","weight","shift","scale","hash"}],
///    "fit":{"data","split","n"}}.
/// Member paths in the card are made relative to `out_dir` (the folder the card
/// will live in). Throws UsageError on bad options, DataError on bad models.
json fit_ensemble(const EnsembleOptions& o, const std::string& out_dir);

/// Write card (from fit_ensemble, plus any extra fields) to out_dir/card.json atomically.
void save_ensemble(const std::string& out_dir, const json& card);

}  // namespace ebm
