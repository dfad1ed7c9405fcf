// ood_sources.h: real out-of-distribution image sets built from Debian
// packages by `ebm data fetch`, laid out as 28x28 grey images in [0, 1].
// They are evaluation-only: each has a val split and a test split drawn from
// disjoint sources (fonts, icon files, photographs), and no training split,
// so no trainer can draw outliers from them.
//
//   letters  A-J from ~100 font faces (letters.h)          near OOD for digits and clothing
//   icons    Adwaita's 48x48 icons (adwaita-icon-theme): luminance times alpha over
//            black, area-resized to 28x28                   far OOD
//   photos   random 28x28 crops of scikit-image's sample photographs and textures
//            (python3-skimage: astronaut, camera, coffee, brick, grass, gravel, ...),
//            each downscaled so its shorter side is 56, 112 or 224 pixels first;
//            luminance                                       far OOD
//
// Split rule, one for all: sources in path order, index % 4 == 3 -> val, else test.
//
// One real set is sacrificed for choices instead (the OOD protocol, docs/ood.md):
//
//   glyphs   Hangul (51 compatibility jamo + 14 syllables) from the 12 Un font
//            faces (fonts-unfonts-core), rendered and laid out as letters are
//            (letters.h), 4 variants each: a val split only, no test split.
//            Choices (outlier kinds, stages) may look at it; no report uses it
//            as a test set. It shares the rendering pipeline, not the fonts or
//            the characters, with `letters`, and docs/ood.md says so.
#pragma once

#include <string>
#include <vector>

namespace ebm {

/// The evaluation-only sets above.
const std::vector<std::string>& evaluation_only_datasets();

/// The validation-only sets above ("glyphs").
const std::vector<std::string>& validation_only_datasets();

/// Build `name` (one of evaluation_only_datasets() or validation_only_datasets()) into root/name/:
/// {val,test}-images.idx (uint8 [N,28,28]), {val,test}-labels.idx (uint8 [N];
/// letters: 0..9 = A..J; icons, photos: the source's index) and sources.txt
/// (index, split, path); a validation-only set has no test files. Returns a one-line summary. Throws DataError when the
/// Debian package that provides the sources is missing.
std::string build_evaluation_set(const std::string& name, const std::string& root);

}  // namespace ebm
