// io/letters.h: the letters dataset's renderer checked against MNIST's layout
// rules computed by brute force on the output (ink box of 20 px, centre of
// mass at the frame's centre), determinism, distinctness, and bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/io/letters.h"

using namespace ebm;

namespace {
const std::string kSans = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const std::string kDingbats = "/usr/share/fonts/opentype/urw-base35/D050000L.otf";

// Longer side of the box of pixels above 0.05, and the centre of mass in
// continuous coordinates (pixel r covers [r, r+1)).
void layout(const torch::Tensor& img, int64_t& longer, double& cy, double& cx) {
  auto a = img.accessor<float, 2>();
  int64_t r0 = 28, r1 = -1, c0 = 28, c1 = -1;
  double m = 0, my = 0, mx = 0;
  for (int64_t r = 0; r < 28; ++r)
    for (int64_t c = 0; c < 28; ++c) {
      const double v = a[r][c];
      m += v, my += v * (r + 0.5), mx += v * (c + 0.5);
      if (v > 0.05) r0 = std::min(r0, r), r1 = std::max(r1, r), c0 = std::min(c0, c), c1 = std::max(c1, c);
    }
  longer = std::max(r1 - r0 + 1, c1 - c0 + 1);
  cy = my / m, cx = mx / m;
}
}  // namespace

TEST(Letters, CanonicalGlyphHasMnistLayout) {
  if (!is_file(kSans)) GTEST_SKIP() << "fonts-dejavu-core not installed";
  for (int k = 0; k < 10; ++k) {
    const auto img = render_letter(kSans, 0, k, 0);
    ASSERT_EQ(img.sizes(), (std::vector<int64_t>{28, 28}));
    EXPECT_GE(img.min().item<float>(), 0.0f);
    EXPECT_LE(img.max().item<float>(), 1.0f);
    EXPECT_GT(img.max().item<float>(), 0.9f) << "letter " << k;
    int64_t longer;
    double cy, cx;
    layout(img, longer, cy, cx);
    // Area resampling can spread faint ink one pixel past the 20-px box.
    EXPECT_GE(longer, 19) << "letter " << k;
    EXPECT_LE(longer, 21) << "letter " << k;
    // Integer placement: the centre of mass is within half a pixel of 14.
    EXPECT_NEAR(cy, 14.0, 0.5 + 1e-6) << "letter " << k;
    EXPECT_NEAR(cx, 14.0, 0.5 + 1e-6) << "letter " << k;
  }
}

TEST(Letters, DeterministicVariantsDifferFromEachOther) {
  if (!is_file(kSans)) GTEST_SKIP() << "fonts-dejavu-core not installed";
  const auto v0 = render_letter(kSans, 3, 2, 0), v1 = render_letter(kSans, 3, 2, 1);
  EXPECT_TRUE(torch::equal(v1, render_letter(kSans, 3, 2, 1)));
  EXPECT_FALSE(torch::equal(v0, v1));
  EXPECT_FALSE(torch::equal(v1, render_letter(kSans, 3, 2, 2)));
  EXPECT_FALSE(torch::equal(v1, render_letter(kSans, 4, 2, 1)));  // the font index enters the seed
  // Variants keep the box within [box_min, box] (+1 for resampling spread).
  for (int64_t v = 1; v < 8; ++v) {
    int64_t longer;
    double cy, cx;
    layout(render_letter(kSans, 0, 0, v), longer, cy, cx);
    EXPECT_GE(longer, LetterOptions().box_min - 1);
    EXPECT_LE(longer, LetterOptions().box + 1);
  }
  // Ten different letters, ten different images.
  for (int a = 0; a < 10; ++a)
    for (int b = a + 1; b < 10; ++b) EXPECT_FALSE(torch::equal(render_letter(kSans, 0, a, 0), render_letter(kSans, 0, b, 0)));
}

TEST(Letters, FontFilterAndBadInput) {
  if (!is_file(kSans)) GTEST_SKIP() << "fonts-dejavu-core not installed";
  EXPECT_TRUE(font_has_latin_letters(kSans));
  if (is_file(kDingbats)) {
    EXPECT_FALSE(font_has_latin_letters(kDingbats));
  }
  EXPECT_FALSE(font_has_latin_letters("/no/such/font.ttf"));
  EXPECT_THROW(render_letter("/no/such/font.ttf", 0, 0, 0), DataError);
  EXPECT_THROW(render_letter(kSans, 0, 10, 0), c10::Error);
  EXPECT_THROW(render_letter(kSans, 0, 0, -1), c10::Error);
}

TEST(Letters, DatasetHasNoTrainingSplit) {
  DatasetOptions o;
  o.split = "fit";
  EXPECT_THROW(load_dataset("letters", o), UsageError);
  o.split = "train";
  EXPECT_THROW(load_dataset("letters", o), UsageError);
}

// render_glyph is the one renderer: letters are its A-J with key = letter.
TEST(Letters, RenderGlyphIsTheLetterRenderer) {
  if (!is_file(kSans)) GTEST_SKIP() << "fonts-dejavu-core not installed";
  for (int k : {0, 4, 9})
    for (int64_t v : {0, 3}) EXPECT_TRUE(torch::equal(render_letter(kSans, 5, k, v), render_glyph(kSans, 5, uint32_t('A' + k), uint64_t(k), v)));
  // A character the font lacks is a DataError naming its code point.
  try {
    render_glyph(kSans, 0, 0x10FFFDu, 0, 0);
    ADD_FAILURE() << "no throw for a private-use code point";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("U+10FFFD"), std::string::npos) << e.what();
  }
}

// glyphs, the validation set: Hangul laid out as MNIST; no test split.
TEST(Letters, GlyphsAreValidationOnly) {
  const std::string un = "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf";
  if (!is_file(un)) GTEST_SKIP() << "fonts-unfonts-core not installed";
  const auto g = render_glyph(un, 0, 0x3131u, 0x3131u, 0);  // the jamo giyeok
  EXPECT_GT(g.max().item<float>(), 0.9f);
  const auto ink = (g > 0.05f).nonzero();
  const int64_t rows = ink.select(1, 0).max().item<int64_t>() - ink.select(1, 0).min().item<int64_t>() + 1;
  const int64_t cols = ink.select(1, 1).max().item<int64_t>() - ink.select(1, 1).min().item<int64_t>() + 1;
  EXPECT_NEAR(double(std::max(rows, cols)), 20.0, 1.0);
  DatasetOptions o;
  o.split = "test";
  EXPECT_THROW(load_dataset("glyphs", o), UsageError);
  o.split = "fit";
  EXPECT_THROW(load_dataset("glyphs", o), UsageError);
}
