// letters.h: a NotMNIST-style near-OOD dataset, the letters A-J rendered from
// the typefaces in Debian's font packages and laid out as MNIST lays out its
// digits, so that a detector cannot tell them apart by framing alone.
//
// One image, for a font face and a letter:
//   1. FreeType renders the glyph anti-aliased at `render_px` pixels.
//   2. Variant 0 is the glyph as drawn; variants v >= 1 apply a seeded random
//      affine map first (rotation, shear, aspect; ranges below), the way
//      handwriting varies.
//   3. The ink's bounding box (pixels > 0.05) is scaled, aspect kept, so its
//      longer side is `box` pixels (20, MNIST's box; variants draw it from
//      [box_min, box]) with area interpolation.
//   4. It is pasted into a 28x28 frame with its centre of mass at (14, 14),
//      MNIST's centring rule. Pixels are in [0, 1], ink high.
// The randomness comes from a splitmix64 stream seeded by (seed, font index,
// letter, variant), so every image is reproducible on its own. render_glyph
// does the same for any character (the glyphs validation set, ood_sources.h).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace ebm {

struct LetterOptions {
  /// Glyph rendering size in pixels (the em height FreeType is asked for).
  int64_t render_px = 96;
  /// Longer side of the ink box in the 28x28 frame (MNIST: 20).
  int64_t box = 20;
  /// Smallest box for variants v >= 1 (drawn uniformly from [box_min, box]).
  int64_t box_min = 16;
  /// Variants v >= 1: rotation in degrees, uniform in [-max_rotation, max_rotation].
  double max_rotation = 12.0;
  /// Variants v >= 1: horizontal shear, uniform in [-max_shear, max_shear].
  double max_shear = 0.2;
  /// Variants v >= 1: horizontal scale before boxing, uniform in [1-max_aspect, 1+max_aspect].
  double max_aspect = 0.15;
  /// Seed of the variants.
  uint64_t seed = 2024;
};

/// Render the character `codepoint` (Unicode) of `font_path` (face 0), variant
/// `variant`, by the steps above, as a [28,28] float32 image. `font_index` and
/// `key` (any number naming the character within its set) seed the variant's
/// affine map, so every (font, character, variant) is reproducible on its
/// own. Throws DataError when the font cannot be read or has no such glyph.
torch::Tensor render_glyph(const std::string& font_path, int64_t font_index, uint32_t codepoint, uint64_t key,
                           int64_t variant, const LetterOptions& o = {});

/// Render letter `letter` (0 = 'A' ... 9 = 'J') of the font file `font_path`
/// (face 0), variant `variant`, as a [28,28] float32 image. `font_index`
/// enters the seed so two fonts' variants differ. Throws DataError when the
/// font cannot be read or has no such glyph.
torch::Tensor render_letter(const std::string& font_path, int64_t font_index, int letter, int64_t variant,
                            const LetterOptions& o = {});

/// True when the font renders all of A-J as distinct, non-empty glyphs that
/// are not the font's "missing glyph" box (symbol and dingbat fonts fail).
bool font_has_latin_letters(const std::string& font_path);

/// The font files the `letters` dataset is built from: every .otf/.ttf under
/// the folders of the Debian font packages named in data_fetch.cpp, sorted by
/// path, keeping those for which font_has_latin_letters() holds.
std::vector<std::string> letter_fonts();

}  // namespace ebm
