// outliers.h: the training outliers of energy-bounded fine-tuning.
//
// Every kind is synthesised, never read from another dataset, so that a
// reported OOD test set cannot leak into training by accident; the two kinds
// that do share a test set's generator are named by outlier_test_sets() and
// recorded on the card ("ood_seen"), and `ood eval` leaves those sets out of
// its means.
//
//   pixel-shuffle  a random permutation of all pixels of the image
//   patch-shuffle  the 4x4 grid of 7x7 patches permuted
//   blur           9x9 box filter
//   mixup          0.5*x_i + 0.5*x_j of two random images of the batch
//   uniform        U(0,1) pixels          (the generator of the test set "uniform")
//   invert         1 - x                  (the generator of "invert:<name>")
//   strokes        1-3 random cubic Bezier pen strokes on black (draw_strokes)
//   shapes         1-3 filled ellipses and rectangles, flat or shaded (draw_shapes)
//   flip           the image mirrored, upside down or turned 90 degrees, the
//                  first (from a random start) that differs from the image by
//                  at least kFlipMinChange of its norm, else strokes: a digit
//                  that is no digit. Its upside-down turn is the generator of
//                  the test sets "vflip:<name>".
//   lines          1-3 chains of 1-3 straight segments with sharp corners (draw_lines)
//   splice         one side of the image joined to the other side of another image of
//                  the batch, cut along rows or columns through the middle third
//                  (splice_outlier): strokes that are locally a digit's, globally none
//   smooth         a smooth field: a 2x2..5x5 grid of random values stretched to a
//                  range of at least kSmoothMinRange and upsampled bilinearly
//                  (draw_smooth); never flat, so it is not the generator of "constant"
//
// strokes, shapes and lines are line drawings and flat-shaded objects that belong to
// no dataset: stand-ins for "other things drawn in a 28x28 frame". They were
// designed knowing that the near-OOD test sets are handwriting and glyphs and
// the far ones include icons; smooth was designed knowing that constants and
// photographs are among the far ones. No test image was used to make any of
// them, and their parameters below are fixed by hand, not tuned on any OOD set.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace ebm {

/// The kinds above, in this order.
const std::vector<std::string>& outlier_kinds();

/// Outliers from an in-distribution batch x [B,1,H,W] in [0,1] -> [B,1,H,W] in
/// [0,1]: each row is one kind, drawn uniformly among `kinds`. All randomness
/// comes from `gen`. UsageError for an empty list or an unknown kind.
torch::Tensor synthesize_outliers(const torch::Tensor& x, at::Generator& gen,
                                  const std::vector<std::string>& kinds = outlier_kinds());

/// flip keeps a turned image only when |o - x| >= kFlipMinChange * |x|, so that
/// symmetric digits (0, 1, 8) are not taught as outliers.
constexpr double kFlipMinChange = 0.5;

/// smooth's smallest max - min over the image: far from a constant image.
constexpr double kSmoothMinRange = 0.25;

/// The OOD test sets that share a generator with `kinds` ("uniform", "invert:*", "vflip:*"),
/// as a card's "ood_seen" records them (ood.h's seen_in_training reads it).
std::vector<std::string> outlier_test_sets(const std::vector<std::string>& kinds);

/// One anti-aliased pen stroke: the polyline pts [P,2] (row, col in pixel
/// units, pixel centres at integers) drawn with radius r and intensity v into
/// an [H,W] canvas: pixel = v * clamp(r + 0.5 - d, 0, 1), d the distance from
/// the pixel centre to the nearest point of the polyline's segments.
torch::Tensor draw_polyline(const torch::Tensor& pts, double r, double v, int64_t h, int64_t w);

/// n images [n,1,H,W]: each 1-3 cubic Bezier strokes (control points uniform in
/// the central 20x20 box scaled to H,W; radius U(0.7,2.0) px; intensity
/// U(0.7,1)), combined by max.
torch::Tensor draw_strokes(int64_t n, int64_t h, int64_t w, at::Generator& gen);

/// n images [n,1,H,W]: each 1-3 chains of 1-3 straight segments (vertices
/// uniform in the central 20x20 box scaled to H,W; radius U(0.7,2.0) px;
/// intensity U(0.7,1)), combined by max.
torch::Tensor draw_lines(int64_t n, int64_t h, int64_t w, at::Generator& gen);

/// n images [n,1,H,W]: each a g x g grid (g uniform in 2..5) of U(0,1) values
/// upsampled bilinearly (corners aligned), stretched to exactly [0,1] and mapped
/// to [base, base + range], range U(kSmoothMinRange, 1), base U(0, 1 - range).
torch::Tensor draw_smooth(int64_t n, int64_t h, int64_t w, at::Generator& gen);

/// a [C,H,W] and b [C,H,W] joined along `axis` (1 rows, 2 columns): the first
/// `cut` rows (columns) of a, the rest of b. cut in (0, size(axis)).
torch::Tensor splice_outlier(const torch::Tensor& a, const torch::Tensor& b, int64_t axis, int64_t cut);

/// n images [n,1,H,W]: each 1-3 filled shapes (ellipse or rotated rectangle,
/// centre in the central box, half-axes U(2,10) px scaled, grey U(0.2,1), half
/// of them with a linear shade across the shape), painted in order on black
/// with anti-aliased edges.
torch::Tensor draw_shapes(int64_t n, int64_t h, int64_t w, at::Generator& gen);

}  // namespace ebm
