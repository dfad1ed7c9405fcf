// restore.h: denoising and inpainting as constrained energy minimisation,
// both thin layers over langevin().
//
//   denoise:  x* = argmin_x E(x) + lambda * ||x - y||^2     (fidelity term)
//   inpaint:  x* = argmin_x E(x) with the known pixels frozen (mask term)
#pragma once

#include <torch/types.h>

#include <cmath>
#include <string>
#include <vector>

#include "ebm/core/langevin.h"

namespace ebm {

struct DenoiseOptions {
  /// "fixed": one chain of `steps` at `data_weight` (the reference denoise_with_ebm).
  /// "progressive": chains of `stage_steps` at each of `stage_weights`, each stage's
  /// output becoming the next stage's observation (the reference progressive_denoising).
  TORCH_ARG(std::string, schedule) = "fixed";
  TORCH_ARG(int64_t, steps) = 100;
  TORCH_ARG(double, step_size) = 0.01;
  /// lambda in lambda*||x - y||^2.
  TORCH_ARG(double, data_weight) = 10.0;
  TORCH_ARG(std::vector<double>, stage_weights) = std::vector<double>{1.0, 0.5, 0.25, 0.1};
  TORCH_ARG(int64_t, stage_steps) = 50;
  /// Langevin noise; 0 (the reference) makes the solver deterministic gradient descent.
  TORCH_ARG(double, noise) = 0.0;
  TORCH_ARG(double, grad_clip) = 0.0;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Which method denoise_solve() runs: "gd" (the gradient steps above),
  /// "tweedie" or "map" (ebm_denoise; need sigma), or "auto": tweedie when
  /// sigma > 0, else gd. Tweedie is the default because `ebm denoise eval`
  /// measured it best in PSNR and cheapest of the EBM solvers (docs/restore.md).
  TORCH_ARG(std::string, solver) = "auto";
  /// Noise std of the input when known (0 = unknown).
  TORCH_ARG(double, sigma) = 0.0;
};

/// y: noisy images [B,C,H,W] in [0,1] -> restored [B,C,H,W] in [0,1] by the
/// gradient-step solver (o.solver is ignored).
torch::Tensor denoise(Energy& e, const torch::Tensor& y, const DenoiseOptions& o);
/// The method o.solver() stands for ("auto" resolved); UsageError on an
/// unknown solver or tweedie/map without sigma.
std::string denoise_solver(const DenoiseOptions& o);
/// Denoise with denoise_solver(o).
torch::Tensor denoise_solve(Energy& e, const torch::Tensor& y, const DenoiseOptions& o);

/// The mask `ebm inpaint` and `ebm inpaint eval` use when none is given.
inline constexpr const char* kDefaultInpaintMask = "center:14";

struct InpaintOptions {
  TORCH_ARG(int64_t, steps) = 200;
  TORCH_ARG(double, step_size) = 0.01;
  TORCH_ARG(double, noise) = 0.005;
  TORCH_ARG(double, grad_clip) = 0.0;
  /// Step and noise schedules (see langevin.h); constant for the reference.
  TORCH_ARG(Schedule, step_schedule) = {};
  TORCH_ARG(Schedule, noise_schedule) = {};
  /// Independent chains per image; the one with the lowest final energy wins.
  TORCH_ARG(int64_t, chains) = 1;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Mask spec for callers that build the mask with make_mask().
  TORCH_ARG(std::string, mask) = kDefaultInpaintMask;
};

/// image: [B,C,H,W] in [0,1]; known: [B or 1,C,H,W] with 1 = known, 0 = missing.
/// Missing pixels start from U(0,1); known pixels of the result equal the
/// input bit for bit. Returns [B,C,H,W].
torch::Tensor inpaint(Energy& e, const torch::Tensor& image, const torch::Tensor& known,
                      const InpaintOptions& o);

/// Known-pixel mask [B,1,H,W] (float 1 = known) from a spec:
///   center:K   a KxK missing box in the middle
///   random:P   each pixel missing with probability P (seeded)
///   half       the bottom half missing
///   <file>     a PNG/IDX/NPY mask, nonzero = missing (as cv::inpaint), [H,W] or [B,1,H,W]
torch::Tensor make_mask(const std::string& spec, int64_t batch, int64_t height, int64_t width,
                        uint64_t seed = 0);

}  // namespace ebm

#include <nlohmann/json.hpp>

namespace ebm {

/// Side-by-side restoration evaluation on a dataset's test split.
struct RestoreEvalOptions {
  TORCH_ARG(std::string, data) = "fashion-mnist";
  /// Denoising: std of the Gaussian noise added to clean test images (then clipped to [0,1]).
  TORCH_ARG(double, sigma) = 0.2;
  /// Inpainting: mask spec (see make_mask).
  TORCH_ARG(std::string, mask) = kDefaultInpaintMask;
  /// Test images evaluated (the first n of the test split).
  TORCH_ARG(int64_t, n) = 1000;
  /// Validation images (val split, never test) for tuning each baseline's parameter.
  TORCH_ARG(int64_t, n_val) = 100;
  TORCH_ARG(bool, baselines) = true;
  /// EBM methods to run (without the "ebm-" prefix); empty = all.
  TORCH_ARG(std::vector<std::string>, methods) = {};
  TORCH_ARG(int64_t, chains) = 1;
  /// Largest noise level of the tweedie inpainter; 0 = the model card's largest
  /// training sigma ("options.dsm_sigmas"), else 0.4.
  TORCH_ARG(double, sigma_max) = 0.0;
  /// Last noise level of the tweedie inpainter (its final Tweedie step). Higher
  /// values return smoother per-chain estimates (closer to the posterior mean).
  /// 0.1 was chosen on the MNIST val split (center:14, 16 chains: masked PSNR
  /// 9.18 dB against 9.13 dB at 0.02).
  TORCH_ARG(double, sigma_min) = 0.1;
  /// Noise levels and renoise-denoise steps per level of the tweedie inpainter
  /// (tweedie.h); per chain it costs levels * repeats energy gradients.
  TORCH_ARG(int64_t, levels) = 30;
  TORCH_ARG(int64_t, repeats) = 3;
  /// "test" (reported figures) or "val" (tuning; the baselines then tune on the
  /// first n_val of the same images they are scored on).
  TORCH_ARG(std::string, split) = "test";
  TORCH_ARG(uint64_t, seed) = 0;
  /// Optional PNG: rows clean / input / each method, first 8 images.
  TORCH_ARG(std::string, grid) = "";
};

/// EBM denoisers (names in reports are "ebm-" + these):
///   reference    the reference denoise_with_ebm (100 steps, step 0.01, lambda 10)
///   progressive  the reference progressive_denoising
///   map          MAP with the Gaussian likelihood: lambda = 1/(2 sigma^2), step 0.3 sigma^2, 50 steps
///   tweedie      one Tweedie step x = y - sigma^2 grad E(y) (the MMSE estimate for a DSM energy)
std::vector<std::string> ebm_denoise_methods();
/// EBM inpainters: reference (the reference inpaint_with_ebm, known pixels exact) and
/// annealed (Langevin with step and noise annealed geometrically from sigma 0.5 to 0.03,
/// then one Tweedie step on the missing pixels) and tweedie (iterated noise + Tweedie
/// denoising at sigma_max -> sigma_min with the known pixels pasted back after every step;
/// the chains are averaged, an estimate of the posterior mean).
std::vector<std::string> ebm_inpaint_methods();

/// Run one EBM denoiser: y [N,1,H,W] noisy in [0,1], sigma the noise std -> [N,1,H,W].
torch::Tensor ebm_denoise(Energy& e, const std::string& method, const torch::Tensor& y, double sigma, uint64_t seed);
/// Run one EBM inpainter (known pixels exact) -> [N,1,H,W].
/// sigma_max > sigma_min > 0, levels, repeats: the tweedie method's schedule (see RestoreEvalOptions).
torch::Tensor ebm_inpaint(Energy& e, const std::string& method, const torch::Tensor& image, const torch::Tensor& known,
                          int64_t chains, uint64_t seed, double sigma_max, double sigma_min, int64_t levels,
                          int64_t repeats);
/// The largest "options.dsm_sigmas" value of a native model's card, else `fallback`.
double card_sigma_max(const Energy& e, double fallback = 0.4);

/// The shipped restoration prior for a dataset: models/mnist-dsm-wide for
/// mnist, models/fmnist-dsm otherwise.
std::string default_restore_model(const std::string& data);

/// One method's row of a restoration report (means over the images).
struct RestoreMethodResult {
  std::string name;                   ///< "noisy"/"masked" (the input), "ebm-<method>", or a baseline
  double psnr = 0, ssim = 0;
  double psnr_masked = std::nan("");  ///< inpainting: PSNR over the missing pixels only
  double seconds = 0;                 ///< per image
  nlohmann::json params;              ///< the method's settings (baselines: the value tuned on val)
};

/// What `ebm denoise eval` / `ebm inpaint eval` measure, with its writers.
struct RestoreReport {
  std::string kind;  ///< "denoise" | "inpaint"
  std::string data, split;
  double sigma = 0;  ///< denoise: the noise std (clipped noise)
  std::string mask;  ///< inpaint: the mask spec
  int64_t n = 0;
  uint64_t seed = 0;
  std::vector<RestoreMethodResult> methods;
  std::string note;

  /// denoise: {"sigma","data","split","n","clipped":true,"seed","methods":[{"name","psnr","ssim","seconds","params"}],"note"}
  /// inpaint: {"mask","data","split","n","seed","methods":[{... "psnr_masked"}],"note"}
  nlohmann::json to_json() const;
  /// A fixed-width table, one row per method.
  std::string to_text() const;
  /// The same table in Markdown.
  std::string to_markdown() const;
};

RestoreReport denoise_eval(Energy& e, const RestoreEvalOptions& o);
RestoreReport inpaint_eval(Energy& e, const RestoreEvalOptions& o);

}  // namespace ebm
