// shift.h: graded distribution shift. The seven families `ebm ood shift`
// applies to in-distribution images, each defined here and only here with its
// severity scale. Images are x [N,C,H,W] in [0,1]; every family returns the
// same shape, in [0,1].
//
//   family      severity s                                           range   random (seeded)
//   noise       sigma of additive N(0, s^2) noise per pixel, then     0..1    the noise draw
//               clipped to [0,1]
//   blur        sigma in pixels of a separable Gaussian kernel        0..3    none
//               (radius ceil(3s), reflect padding)
//   rotate      degrees about the image centre (bilinear, black      0..90   each image's
//               fill); each image turns by +s or -s                          direction
//   contrast    c: x -> (1-c) x + c mean(x), the mean per image and   0..1    none
//               channel (c = 1: a flat image at its mean)
//   occlude     side in pixels (rounded) of a mid-grey (0.5) square  0..20   each image's
//               inside the image; every severity's square holds the          square position
//               smaller ones (one position per image, squares
//               concentric within a 20 px frame)
//   quantize    bits removed from 8: round(x (L-1)) / (L-1) with      0..7    none
//               L = max(2, round(2^(8-s))) grey levels (7: two)
//   mix:<name>  alpha: (1-alpha) x + alpha y, y an image of <name>'s  0..1    the pairing
//               TEST split (data.h; a file is used whole), paired
//               without repetition when it has enough images
//
// Severity 0 is the identity for every family, bit for bit (one rule, in
// Shift::apply). K levels are linspace(0, max, K), so level 0 is the clean set.
// The same seed gives the same images; it is the same at every severity (common
// random numbers), so a higher severity of one family differs from a lower one
// only by its severity: the same noise draw scaled up, the same square grown,
// the same partner image mixed in more.
//
// Why these ranges: each stops where its shift has destroyed the image (noise
// and contrast), replaced it (mix), or where a simple statistic stops growing.
// The mean squared error to the clean image rises over every range
// (tests/test_shift.cpp); for rotate it peaks near 90 degrees (a half turn of a
// left-right symmetric item, a shirt or a 0, is closer to the original than a
// quarter turn), so its scale stops there.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ebm {

/// The family names, in table order: noise, blur, rotate, contrast, occlude, quantize, mix.
const std::vector<std::string>& shift_families();

/// Every family once, the mixture with "letters" (a 28x28 set that is neither
/// MNIST nor Fashion-MNIST, so the default fits either): what `ebm ood shift`
/// runs without --shifts.
const std::vector<std::string>& default_shifts();

/// One shift family, parsed from its spec.
struct Shift {
  std::string spec;     // as given: "noise", ..., "mix:letters"
  std::string family;   // one of shift_families()
  std::string partner;  // mix only: the dataset mixed in
  double max_severity = 0;
  std::string unit;     // what the severity measures, e.g. "sigma", "degrees", "alpha"
  /// mix only: the partner's images [M,C,H,W] in [0,1] (load_partner, or set by hand).
  torch::Tensor partner_images;

  /// "noise" | "blur" | "rotate" | "contrast" | "occlude" | "quantize" | "mix:<name>";
  /// UsageError naming the spec and the families otherwise.
  static Shift parse(const std::string& spec);
  /// One line for help texts and reports: the family, its severity and range.
  std::string describe() const;
  /// k severities, linspace(0, max_severity, k); k >= 2 (UsageError otherwise).
  std::vector<double> levels(int64_t k) const;
  /// mix only (a no-op for the others): load the partner's test split (all of
  /// it; synthetic sets: `n` images from `seed`). DataError when it is empty.
  void load_partner(const std::string& root = "", int64_t n = 2000, uint64_t seed = 0);
  /// x [N,C,H,W] in [0,1] at severity s in [0, max_severity] (UsageError
  /// naming s otherwise) -> [N,C,H,W] in [0,1]. mix needs partner_images with
  /// x's [C,H,W]; occlude needs H, W >= 20.
  torch::Tensor apply(const torch::Tensor& x, double severity, uint64_t seed) const;
};

/// Separable Gaussian blur of x [N,C,H,W] with `sigma` pixels (radius
/// ceil(3 sigma) < min(H, W), reflect padding, which keeps the border's
/// brightness); sigma > 0.
torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma);

}  // namespace ebm
