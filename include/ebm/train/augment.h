// augment.h: the training batch pipeline. From clean fit-split images
// x [B,1,H,W] (labels y [B]) to the batch a task trains on, in this order:
//   1. random translation by up to augment_shift pixels          (the "clean" batch)
//   2. Gaussian dequantisation noise of std data_noise
//   3. per-image noise of std ~ U(0, noise_augment), clipped       (classifier guidance)
//      then per-image noise at one of noise_augment_sigmas or none, unclipped  (annealed guidance)
//   4. adversarial share: PGD (adv_eps) on adv_fraction of the clean rows
//   5. purification share: purify_fraction of the clean rows replaced by one
//      purification draw of the purify_augment model (optionally attacked first)
// All randomness comes from the caller's generator, in this order, so a
// resumed run replays the same batches.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "ebm/core/energy.h"
#include "ebm/defend/purify.h"
#include "ebm/train/train.h"

namespace ebm {

class Augmentation {
 public:
  /// Loads the purify_augment model (and its card's "purify" settings) when named.
  explicit Augmentation(const TrainOptions& o);
  /// The batch to train on; `model` (in training mode) is what steps 4-5 attack.
  /// `step` seeds the attacks. -> [B,1,H,W]
  torch::Tensor apply(Energy& model, const torch::Tensor& x, const torch::Tensor& y, int64_t step,
                      at::Generator& gen) const;
  /// The augmentation's entries of the card's "options".
  void card_options(nlohmann::json& opts) const;

 private:
  TrainOptions o_;
  EnergyPtr purifier_;
  PurifyOptions purify_;
};

}  // namespace ebm
