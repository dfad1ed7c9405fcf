#include "ebm/io/letters.h"

#include <ft2build.h>
#include FT_FREETYPE_H

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <dirent.h>
#include <memory>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"

namespace ebm {
namespace {

// splitmix64: a tiny, fully specified generator, so the dataset does not
// depend on how a standard library implements its distributions.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform(double lo, double hi) { return lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53; }
};

struct FtLibrary {
  FT_Library lib = nullptr;
  FtLibrary() {
    if (FT_Init_FreeType(&lib)) throw DataError("FreeType failed to initialise");
  }
  ~FtLibrary() { FT_Done_FreeType(lib); }
};

struct FtFace {
  FT_Face face = nullptr;
  FtFace(FT_Library lib, const std::string& path, int64_t px) {
    if (!is_file(path)) throw DataError("font '" + path + "' does not exist (scripts/setup installs the fonts)");
    if (FT_New_Face(lib, path.c_str(), 0, &face)) throw DataError("font '" + path + "': FreeType cannot read it");
    if (FT_Set_Pixel_Sizes(face, 0, static_cast<FT_UInt>(px)))
      throw DataError("font '" + path + "': cannot set size " + std::to_string(px));
  }
  ~FtFace() {
    if (face) FT_Done_Face(face);
  }
};

// The glyph as FreeType draws it: [rows, width] float in [0,1]; empty when the
// font has no glyph for the character.
cv::Mat glyph(FT_Face face, uint32_t c) {
  if (FT_Get_Char_Index(face, static_cast<FT_ULong>(c)) == 0) return {};
  if (FT_Load_Char(face, static_cast<FT_ULong>(c), FT_LOAD_RENDER)) return {};
  const FT_Bitmap& b = face->glyph->bitmap;
  if (b.pixel_mode != FT_PIXEL_MODE_GRAY || b.rows == 0 || b.width == 0) return {};
  cv::Mat g(static_cast<int>(b.rows), static_cast<int>(b.width), CV_32F);
  for (unsigned r = 0; r < b.rows; ++r)
    for (unsigned col = 0; col < b.width; ++col)
      g.at<float>(int(r), int(col)) = b.buffer[r * b.pitch + col] / 255.0f;
  return g;
}

// Crop to the ink (> 0.05); empty when there is none.
cv::Mat crop_ink(const cv::Mat& g) {
  cv::Mat mask = g > 0.05f;
  if (cv::countNonZero(mask) == 0) return {};
  return g(cv::boundingRect(mask)).clone();
}

torch::Tensor layout_mnist(const cv::Mat& ink, double box) {
  const double scale = box / std::max(ink.rows, ink.cols);
  const int h = std::max(1, int(std::lround(ink.rows * scale))), w = std::max(1, int(std::lround(ink.cols * scale)));
  cv::Mat small;
  cv::resize(ink, small, cv::Size(w, h), 0, 0, cv::INTER_AREA);
  small = cv::min(cv::max(small, 0.0), 1.0);
  const cv::Moments m = cv::moments(small);
  const double cy = m.m00 > 0 ? m.m01 / m.m00 : h / 2.0, cx = m.m00 > 0 ? m.m10 / m.m00 : w / 2.0;
  // Pixel centres are at integer + 0.5 in the frame; the centre of mass of a
  // pixel grid at offset (oy, ox) is (oy + cy + 0.5, ox + cx + 0.5).
  const int oy = int(std::lround(14.0 - 0.5 - cy)), ox = int(std::lround(14.0 - 0.5 - cx));
  auto out = torch::zeros({28, 28}, torch::kFloat32);
  auto a = out.accessor<float, 2>();
  for (int r = 0; r < h; ++r)
    for (int c = 0; c < w; ++c) {
      const int y = r + oy, x = c + ox;
      if (y >= 0 && y < 28 && x >= 0 && x < 28) a[y][x] = small.at<float>(r, c);
    }
  return out;
}

}  // namespace

torch::Tensor render_glyph(const std::string& font_path, int64_t font_index, uint32_t codepoint, uint64_t key,
                           int64_t variant, const LetterOptions& o) {
  TORCH_CHECK(variant >= 0, "render_glyph: variant must be >= 0, got ", variant);
  TORCH_CHECK(o.box_min > 0 && o.box_min <= o.box && o.box <= 28, "render_glyph: need 0 < box_min <= box <= 28");
  static thread_local FtLibrary lib;
  FtFace face(lib.lib, font_path, o.render_px);
  cv::Mat g = glyph(face.face, codepoint);
  if (g.empty()) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "U+%04X", unsigned(codepoint));
    throw DataError("font '" + font_path + "' has no glyph " + hex);
  }
  double box = double(o.box);
  if (variant > 0) {
    SplitMix rng{o.seed ^ (uint64_t(font_index) * 0x100000001b3ull) ^ (key << 40) ^ (uint64_t(variant) << 48)};
    const double rot = rng.uniform(-o.max_rotation, o.max_rotation) * M_PI / 180.0;
    const double shear = rng.uniform(-o.max_shear, o.max_shear);
    const double aspect = rng.uniform(1.0 - o.max_aspect, 1.0 + o.max_aspect);
    box = rng.uniform(double(o.box_min), double(o.box));
    // Pad so that no ink leaves the canvas, then map about the canvas centre.
    const int pad = std::max(g.rows, g.cols);
    cv::Mat canvas;
    cv::copyMakeBorder(g, canvas, pad, pad, pad, pad, cv::BORDER_CONSTANT, 0.0);
    const double cx = canvas.cols / 2.0, cy = canvas.rows / 2.0;
    // A = R(rot) * [[aspect, shear], [0, 1]], applied about (cx, cy).
    const double c = std::cos(rot), s = std::sin(rot);
    const double a00 = c * aspect, a01 = c * shear - s, a10 = s * aspect, a11 = s * shear + c;
    cv::Mat A = (cv::Mat_<double>(2, 3) << a00, a01, cx - a00 * cx - a01 * cy, a10, a11, cy - a10 * cx - a11 * cy);
    cv::Mat warped;
    cv::warpAffine(canvas, warped, A, canvas.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, 0.0);
    g = warped;
  }
  const cv::Mat ink = crop_ink(g);
  if (ink.empty()) throw DataError("font '" + font_path + "': glyph is empty");
  return layout_mnist(ink, box);
}

torch::Tensor render_letter(const std::string& font_path, int64_t font_index, int letter, int64_t variant,
                            const LetterOptions& o) {
  TORCH_CHECK(letter >= 0 && letter < 10, "render_letter: letter must be 0..9 (A-J), got ", letter);
  return render_glyph(font_path, font_index, uint32_t('A' + letter), uint64_t(letter), variant, o);
}

bool font_has_latin_letters(const std::string& font_path) {
  static thread_local FtLibrary lib;
  try {
    FtFace face(lib.lib, font_path, 48);
    // Symbol fonts (Dingbats, Standard Symbols) put pictures or Greek letters
    // at the codes of A-J: require a Unicode charmap that maps A-J, and, when
    // the font names its glyphs, the names "A".."J" themselves.
    if (FT_Select_Charmap(face.face, FT_ENCODING_UNICODE) != 0) return false;
    for (int k = 0; k < 10; ++k) {
      const FT_UInt idx = FT_Get_Char_Index(face.face, static_cast<FT_ULong>('A' + k));
      if (idx == 0) return false;
      if (FT_HAS_GLYPH_NAMES(face.face)) {
        char name[64] = {0};
        if (FT_Get_Glyph_Name(face.face, idx, name, sizeof(name)) == 0 && std::string(name) != std::string(1, char('A' + k)))
          return false;
      }
    }
    std::vector<cv::Mat> gs;
    for (int k = 0; k < 10; ++k) {
      cv::Mat g = crop_ink(glyph(face.face, uint32_t('A' + k)));
      if (g.empty()) return false;
      // Distinct glyphs: a font that maps letters to one "missing" box or to
      // symbols that repeat fails here.
      for (const auto& h : gs)
        if (h.size() == g.size() && cv::norm(h, g, cv::NORM_L1) < 1e-3 * g.total()) return false;
      gs.push_back(g);
    }
    return true;
  } catch (const DataError&) {
    return false;
  }
}

namespace {
void list_fonts(const std::string& dir, std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    const std::string p = dir + "/" + n;
    if (is_dir(p)) {
      list_fonts(p, out);
    } else if (n.size() > 4 && (n.compare(n.size() - 4, 4, ".otf") == 0 || n.compare(n.size() - 4, 4, ".ttf") == 0)) {
      out.push_back(p);
    }
  }
  ::closedir(d);
}
}  // namespace

std::vector<std::string> letter_fonts() {
  // The folders of fonts-urw-base35, fonts-texgyre, fonts-freefont-ttf,
  // fonts-liberation2 and fonts-dejavu-core/-extra (scripts/setup installs them).
  const char* dirs[] = {"/usr/share/fonts/opentype/urw-base35", "/usr/share/texmf/fonts/opentype/public/tex-gyre",
                        "/usr/share/fonts/truetype/freefont", "/usr/share/fonts/truetype/liberation2",
                        "/usr/share/fonts/truetype/dejavu"};
  std::vector<std::string> all;
  for (const char* d : dirs) list_fonts(d, all);
  std::sort(all.begin(), all.end());
  std::vector<std::string> keep;
  for (const auto& p : all)
    if (font_has_latin_letters(p)) keep.push_back(p);
  return keep;
}

}  // namespace ebm
