// image_metrics.h: restoration quality, with scikit-image's conventions.
//
//   PSNR  10*log10(R^2 / MSE) per image with data range R = 1, then averaged
//         over images (skimage.metrics.peak_signal_noise_ratio, data_range=1).
//         Identical images give +inf; averages skip nothing, so report them.
//   Masked PSNR  the same with the MSE taken over the pixels where mask != 0
//         only (for inpainting: the missing pixels).
//   SSIM  skimage.metrics.structural_similarity defaults: 7x7 uniform window,
//         K1 = 0.01, K2 = 0.03, data_range = 1, sample covariance (N/(N-1)),
//         mean over the region cropped by 3 pixels at each border (the central
//         22x22 of a 28x28 image). Computed in float64.
#pragma once

#include <torch/types.h>

namespace ebm {

/// x, ref: [N,1,H,W] in [0,1] -> [N] PSNR in dB (float64).
torch::Tensor psnr(const torch::Tensor& x, const torch::Tensor& ref);

/// PSNR over pixels where mask != 0. mask: [N or 1,1,H,W]. -> [N] (float64).
torch::Tensor psnr_masked(const torch::Tensor& x, const torch::Tensor& ref, const torch::Tensor& mask);

/// x, ref: [N,1,H,W] in [0,1], H,W >= 7 -> [N] mean SSIM (float64).
torch::Tensor ssim(const torch::Tensor& x, const torch::Tensor& ref);

}  // namespace ebm
