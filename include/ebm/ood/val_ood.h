// val_ood.h: validation OOD, the outliers every OOD choice is made on.
//
// Each kind corrupts in-distribution images (use the FIT split, so that the
// in-distribution val and test splits stay clean). None shares a generator
// with a reported test set (gaussian, uniform, constant, vflip:, invert:, the
// real sets of data.h), so a choice made on them cannot have seen test data.
//
//   pixel-shuffle  each image's pixels permuted at random (keeps the histogram,
//                  destroys all structure)
//   patch-shuffle  the image cut into a 4x4 grid of 7x7 patches, the patches
//                  permuted (keeps local strokes, breaks the global shape)
//   blur           Gaussian blur, sigma 2 px (removes the detail)
//   mixup          0.5 * x + 0.5 * another image of the batch (two objects in
//                  one frame, a near-OOD stand-in)
//
// x: [N,1,28,28] in [0,1] -> [N,1,28,28] in [0,1]; the same seed gives the
// same images.
//
// Beside the corruptions, one real set is sacrificed for choices: glyphs
// (Hangul rendered from fonts no test set uses, ood_sources.h), a near-OOD
// stand-in for handwriting and letters. It is not part of "val-ood" (the
// post-hoc detectors' choices stay on the corruptions); name it explicitly.
//
// train.h's synthesize_outliers draws kinds of the same names row by row for
// energy-finetune (its blur is a 9x9 box). It stays separate because the
// shipped models' recipes depend on its exact random stream, and because the
// train layer does not link the ood layer.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace ebm {

/// The kinds above, in this order.
const std::vector<std::string>& val_ood_kinds();

/// One corruption of x [N,C,H,W] (H and W divisible by 4 for patch-shuffle).
/// UsageError for an unknown kind.
torch::Tensor corrupt(const std::string& kind, const torch::Tensor& x, uint64_t seed);

/// True for a kind above, "val-ood" (all of them) or "glyphs".
bool is_val_ood(const std::string& name);

/// The validation-OOD set `kind` for in-distribution dataset `in`: the last
/// `n` images of its fit split (at most all), corrupted with `seed`; for
/// "glyphs", a random subset (by `seed`) of n of its val images. The tail
/// of the fit split, because fit_posthoc() takes its statistics from the head.
/// [n,C,H,W].
torch::Tensor validation_ood(const std::string& kind, const std::string& in, int64_t n, uint64_t seed,
                             const std::string& root = "");

}  // namespace ebm
