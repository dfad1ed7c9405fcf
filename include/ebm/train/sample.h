// sample.h: drawing samples from a trained model, as `ebm sample` does.
//
// The library owns the whole behaviour: the tuned sampler defaults, the
// model card's "sampler" entry (settings a model was tuned for), the chain
// starts (uniform, per-class Gaussian, one Gaussian), class conditioning and
// the independent judge. The CLI binds its flags to SampleOptions and prints
// the SampleReport.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <functional>
#include <set>
#include <string>

#include "ebm/compose/quality.h"
#include "ebm/core/annealed.h"
#include "ebm/core/energy.h"
#include "ebm/core/langevin.h"

namespace ebm {

/// Chain starts of sample().
enum class ChainInit {
  kUniform,      ///< U(0,1) pixels (IGEBM/JEM)
  kGaussian,     ///< per-class Gaussian of the data's fit split (JEM++); with a class, that class's
  kGaussianAll,  ///< one Gaussian of the whole fit split: starts carry no class
};
/// "uniform" | "gaussian" | "gaussian-all"; UsageError names the bad value otherwise.
ChainInit parse_chain_init(const std::string& s);
std::string to_string(ChainInit init);

/// The unconditional sampler `ebm sample` uses when a model card has no
/// "sampler" entry: 200 steps of size 10, noise 0.005, |grad E| capped at
/// 0.03 per pixel (the IGEBM / UvA tutorial settings on [0,1] images).
/// LangevinOptions' own defaults are the primitive's (60 steps, no clip).
LangevinOptions tuned_sampler();

struct SampleOptions {
  /// Number of samples.
  TORCH_ARG(int64_t, n) = 64;
  /// "auto" | "langevin" | "annealed" (resolve_sampler in annealed.h: auto is
  /// annealed on a noise-conditional model, langevin otherwise).
  TORCH_ARG(std::string, sampler) = "auto";
  /// The shared sampler's settings (steps, step size, noise, clip, schedules).
  TORCH_ARG(LangevinOptions, langevin) = tuned_sampler();
  /// The annealed sampler's settings (levels, steps per level, epsilon, corrector).
  TORCH_ARG(AnnealedOptions, annealed) = image_annealed_sampler();
  /// Chain starts.
  TORCH_ARG(std::string, init) = "uniform";
  /// For classifiers: sample E(x|y=cls) = -logits[cls]; -1 = the model's energy.
  TORCH_ARG(int64_t, cls) = -1;
  /// Dataset of the Gaussian starts; "" = the model card's "data".
  TORCH_ARG(std::string, data) = "";
  /// Seed of starts and noise (and of the real sets the Fréchet distance uses).
  TORCH_ARG(uint64_t, seed) = 0;
  /// With a judge: Fréchet distance of the samples in the judge's features to
  /// real test images (of class cls when cls >= 0, else all), its real-vs-real
  /// reference, and, for MNIST with a class, kNN agreement (quality.h). The
  /// real images are the dataset `data` names, else the model card's "data",
  /// else the judge's card's "data".
  TORCH_ARG(QualityOptions, quality) = {};
};

/// The sampler keys a card's "sampler" entry may hold, and the field each sets:
/// "method" (auto | langevin | annealed), the Langevin keys (steps, step_size, noise,
/// grad_clip, step_schedule, noise_schedule), "init", and the annealed keys
/// (sigma_max, sigma_min, levels, steps_per_level, epsilon, corrector).
/// `given` names keys the caller set explicitly (they win over the card).
/// Returns the keys taken from the card. DataError on a malformed entry.
nlohmann::json apply_card_sampler(const nlohmann::json& card, SampleOptions& o, const std::set<std::string>& given = {});

/// Chain starts [n,1,28,28] in [0,1] for `o` (o.init, o.cls, o.data or the
/// card's "data"); all randomness from `gen`.
torch::Tensor chain_starts(const SampleOptions& o, const nlohmann::json& card, at::Generator& gen);

/// What a classifier (never the sampled model) reads in images.
struct JudgedImages {
  double mean_confidence = 0;        ///< mean max-softmax
  std::vector<int64_t> histogram;    ///< argmax counts per class
  double agreement = -1;             ///< share read as the sampled class (-1 without a class)
  nlohmann::json to_json() const;
};
/// `classifier` reads x [N,1,H,W]; cls >= 0 also gives the agreement.
JudgedImages judge_images(Energy& classifier, const torch::Tensor& x, int64_t cls);

struct SampleReport {
  std::string model, model_hash;
  SampleOptions options;
  nlohmann::json sampler_from_card = nlohmann::json::array();  ///< keys the card supplied
  torch::Tensor x;        ///< [n,1,28,28] samples
  torch::Tensor starts;   ///< [n,1,28,28] chain starts
  double mean_energy = 0;
  std::string sampler;            ///< the chain that ran: "langevin" or "annealed"
  AnnealedResult annealed;        ///< with the annealed sampler: levels and acceptance
  std::string judge, judge_hash;  ///< empty without a judge
  JudgedImages judged_starts, judged_samples;
  QualityReport quality;          ///< of the samples; empty without a judge

  nlohmann::json to_json() const;
  /// Human-readable lines (judge figures); empty without a judge.
  std::string to_text() const;
};

/// Load `model`, fill o's sampler from its card (except `given` keys), draw
/// o.n samples and, when `judge` is non-empty, let that classifier read the
/// starts and the samples. UsageError if the judge is the model itself or not
/// a classifier; DivergenceError if the chains blow up. With a judge, the
/// report also holds o.quality's measurements of the samples (quality.h).
/// `on_step(done, total)` reports progress in chain steps.
SampleReport sample(const std::string& model, SampleOptions o, const std::set<std::string>& given = {},
                    const std::string& judge = "", const std::function<void(int64_t, int64_t)>& on_step = {});

}  // namespace ebm
