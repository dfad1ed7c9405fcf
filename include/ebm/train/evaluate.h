// evaluate.h: the figures of a trained model on one split of its data, as
// the end of `ebm train` reports them on the val split and `ebm eval`
// reports them on the test split. Training never looks at test.
//
// Everything is read from the model card (task, data, attribute, options),
// so any model folder can be evaluated the way it was trained:
//   <split>_accuracy, <split>_n     classifiers (thickness attributes: labels
//                                   from the card's tercile boundaries)
//   mean_energy_<split>             mean energy of the split's images
//   mean_energy_uniform_noise       mean energy of 200 U(0,1) images
//   mean_energy_samples             replay-buffer tasks: after 60 Langevin steps
//                                   from noise at the card's sgld settings
//   tweedie_psnr_sigma_S,           dsm: PSNR of one Tweedie step at each
//   noisy_psnr_sigma_S              training sigma (500 images), and of the input
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "ebm/core/energy.h"

namespace ebm {

struct ModelEvalOptions {
  /// Dataset; "" = the card's "data".
  std::string data;
  /// "val" (what training reports) or "test" (reported figures).
  std::string split = "test";
  /// Images of the split (the first n).
  int64_t n = 2000;
  /// Seed of the noise images and of the Langevin and Tweedie noise.
  uint64_t seed = 0;
  /// When non-empty and the task keeps a replay buffer: a PNG grid of the samples.
  std::string samples_png;
  /// Data directory ("" = ebm::data_dir()).
  std::string root;
};

/// The metrics above for `model` with card `card`.
nlohmann::json evaluate_model(Energy& model, const nlohmann::json& card, const ModelEvalOptions& o);

/// Load the model folder or file at `path` and evaluate it with its own card.
nlohmann::json evaluate_model(const std::string& path, const ModelEvalOptions& o);

}  // namespace ebm
