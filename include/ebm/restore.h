// restore.h: denoising and inpainting as constrained energy minimisation,
// both thin layers over langevin().
//
//   denoise:  x* = argmin_x E(x) + lambda * ||x - y||^2     (fidelity term)
//   inpaint:  x* = argmin_x E(x) with the known pixels frozen (mask term)
#pragma once

#include <torch/types.h>

#include "ebm/langevin.h"

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
};

/// y: noisy images [B,C,H,W] in [0,1] -> restored [B,C,H,W] in [0,1].
torch::Tensor denoise(Energy& e, const torch::Tensor& y, const DenoiseOptions& o);

struct InpaintOptions {
  TORCH_ARG(int64_t, steps) = 200;
  TORCH_ARG(double, step_size) = 0.01;
  TORCH_ARG(double, noise) = 0.005;
  TORCH_ARG(double, grad_clip) = 0.0;
  /// Independent chains per image; the one with the lowest final energy wins.
  TORCH_ARG(int64_t, chains) = 1;
  TORCH_ARG(uint64_t, seed) = 0;
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
