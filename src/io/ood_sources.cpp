#include "ebm/io/ood_sources.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <dirent.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"
#include "ebm/io/letters.h"

namespace ebm {
namespace {

constexpr const char* kHangulFontDir = "/usr/share/fonts/truetype/unfonts-core";
constexpr const char* kIconDir = "/usr/share/icons/Adwaita/48x48";
constexpr const char* kSkimageDir = "/usr/lib/python3/dist-packages/skimage/data";
// scikit-image's photographs and textures (colour or grey, any size).
const char* kPhotos[] = {"astronaut.png", "brick.png",   "camera.png",    "chelsea.png",          "coffee.png",
                         "coins.png",     "grass.png",   "gravel.png",    "hubble_deep_field.jpg", "moon.png",
                         "motorcycle_left.png", "retina.jpg", "rocket.jpg", "page.png",            "horse.png"};

bool is_val(size_t source_index) { return source_index % 4 == 3; }

// Every file under dir (recursively) whose name ends in `ext`.
void list_files(const std::string& dir, const std::string& ext, std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    const std::string p = dir + "/" + n;
    if (is_dir(p)) list_files(p, ext, out);
    else if (n.size() > ext.size() && n.compare(n.size() - ext.size(), ext.size(), ext) == 0) out.push_back(p);
  }
  ::closedir(d);
}

// Splits accumulated image by image, then written as IDX files.
struct SplitWriter {
  std::vector<torch::Tensor> img[2];
  std::vector<uint8_t> lab[2];
  std::string manifest;
  void add(bool val, const torch::Tensor& x28, int label) {
    img[val ? 0 : 1].push_back((x28.clamp(0, 1) * 255).round().to(torch::kUInt8));
    lab[val ? 0 : 1].push_back(uint8_t(label));
  }
  void source(size_t i, const std::string& path, bool all_val = false) {
    manifest += std::to_string(i) + "\t" + (all_val || is_val(i) ? "val" : "test") + "\t" + path + "\n";
  }
  // val_only: a validation set (choices are made on it), written without a test split.
  std::string write(const std::string& root, const std::string& name, const std::string& what, bool val_only = false) {
    const std::string dst = root + "/" + name;
    make_dirs(dst);
    const char* names[2] = {"val", "test"};
    for (int s = 0; s < (val_only ? 1 : 2); ++s) {
      const int64_t n = int64_t(lab[s].size());
      if (n == 0) throw DataError(name + ": the " + names[s] + " split came out empty");
      write_tensor(dst + "/" + names[s] + "-labels.idx", torch::from_blob(lab[s].data(), {n}, torch::kUInt8).clone());
      write_tensor(dst + "/" + names[s] + "-images.idx", torch::stack(img[s]));
    }
    write_file_atomic(dst + "/sources.txt", "# " + name + ": index, split, source\n" + manifest);
    if (val_only) return name + ": " + dst + " (" + what + "; val " + std::to_string(lab[0].size()) + " images, no test split)";
    return name + ": " + dst + " (" + what + "; val " + std::to_string(lab[0].size()) + ", test " +
           std::to_string(lab[1].size()) + " images)";
  }
};

torch::Tensor to_tensor(const cv::Mat& m) {  // CV_32F [28,28] -> [28,28]
  return torch::from_blob(const_cast<float*>(m.ptr<float>()), {28, 28}, torch::kFloat32).clone();
}

std::string build_letters(const std::string& root) {
  const auto fonts = letter_fonts();
  if (fonts.size() < 20)
    throw DataError("letters: found " + std::to_string(fonts.size()) +
                    " usable font faces, need at least 20; run scripts/setup (installs fonts-urw-base35, "
                    "fonts-texgyre, fonts-freefont-ttf, fonts-liberation2, fonts-dejavu)");
  constexpr int64_t kVariants = 16;
  SplitWriter w;
  for (size_t i = 0; i < fonts.size(); ++i) {
    w.source(i, fonts[i]);
    for (int k = 0; k < 10; ++k)
      for (int64_t v = 0; v < kVariants; ++v) w.add(is_val(i), render_letter(fonts[i], int64_t(i), k, v), k);
  }
  return w.write(root, "letters", "A-J from " + std::to_string(fonts.size()) + " font faces, " +
                                      std::to_string(kVariants) + " variants each");
}

// Hangul, drawn by the Un fonts (fonts-unfonts-core): the 51 compatibility
// jamo U+3131-U+3163 and the 14 syllables ga, na, ..., ha (consonant + a).
// Simple stroke figures of a script that is neither Latin nor digits.
std::vector<uint32_t> hangul_codepoints() {
  std::vector<uint32_t> c;
  for (uint32_t u = 0x3131; u <= 0x3163; ++u) c.push_back(u);
  for (uint32_t u : {0xAC00u, 0xB098u, 0xB2E4u, 0xB77Cu, 0xB9C8u, 0xBC14u, 0xC0ACu, 0xC544u, 0xC790u, 0xCC28u, 0xCE74u,
                     0xD0C0u, 0xD30Cu, 0xD558u})
    c.push_back(u);
  return c;
}

std::string build_glyphs(const std::string& root) {
  std::vector<std::string> fonts;
  list_files(kHangulFontDir, ".ttf", fonts);
  std::sort(fonts.begin(), fonts.end());
  if (fonts.size() < 4)
    throw DataError("glyphs: found " + std::to_string(fonts.size()) + " fonts under " + kHangulFontDir +
                    "; run scripts/setup (installs fonts-unfonts-core)");
  constexpr int64_t kVariants = 4;
  const auto cps = hangul_codepoints();
  SplitWriter w;
  for (size_t i = 0; i < fonts.size(); ++i) {
    w.source(i, fonts[i], /*all_val=*/true);
    for (size_t k = 0; k < cps.size(); ++k)
      for (int64_t v = 0; v < kVariants; ++v) {
        torch::Tensor x;
        try {
          x = render_glyph(fonts[i], int64_t(i), cps[k], uint64_t(cps[k]), v);
        } catch (const DataError&) {
          continue;  // a face without this character
        }
        w.add(true, x, int(k % 256));
      }
  }
  return w.write(root, "glyphs",
                 std::to_string(cps.size()) + " Hangul characters from " + std::to_string(fonts.size()) + " Un font faces, " +
                     std::to_string(kVariants) + " variants each",
                 /*val_only=*/true);
}

std::string build_icons(const std::string& root) {
  std::vector<std::string> files;
  list_files(kIconDir, ".png", files);
  std::sort(files.begin(), files.end());
  if (files.size() < 100)
    throw DataError("icons: found " + std::to_string(files.size()) + " PNG icons under " + kIconDir +
                    "; run scripts/setup (installs adwaita-icon-theme)");
  SplitWriter w;
  size_t used = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    cv::Mat m = cv::imread(files[i], cv::IMREAD_UNCHANGED);
    if (m.empty() || m.depth() != CV_8U) continue;
    cv::Mat grey, alpha;
    if (m.channels() == 4) {
      std::vector<cv::Mat> ch;
      cv::split(m, ch);
      cv::cvtColor(m, grey, cv::COLOR_BGRA2GRAY);
      alpha = ch[3];
    } else if (m.channels() == 3) {
      cv::cvtColor(m, grey, cv::COLOR_BGR2GRAY);
      alpha = cv::Mat(m.size(), CV_8U, cv::Scalar(255));
    } else {
      grey = m;
      alpha = cv::Mat(m.size(), CV_8U, cv::Scalar(255));
    }
    cv::Mat g, a, out;
    grey.convertTo(g, CV_32F, 1.0 / 255);
    alpha.convertTo(a, CV_32F, 1.0 / 255);
    cv::resize(g.mul(a), out, cv::Size(28, 28), 0, 0, cv::INTER_AREA);
    if (cv::countNonZero(out > 0.05f) < 20) continue;  // near-empty (mostly transparent) icons
    w.source(i, files[i]);
    w.add(is_val(i), to_tensor(out), int(i % 256));
    ++used;
  }
  return w.write(root, "icons", std::to_string(used) + " Adwaita 48x48 icons");
}

std::string build_photos(const std::string& root) {
  SplitWriter w;
  constexpr int kCropsPerScale = 100;
  const int kShort[] = {56, 112, 224};
  size_t i = 0;
  for (const char* f : kPhotos) {
    const std::string path = std::string(kSkimageDir) + "/" + f;
    cv::Mat m = cv::imread(path, cv::IMREAD_GRAYSCALE);
    if (m.empty()) throw DataError("photos: cannot read '" + path + "'; run scripts/setup (installs python3-skimage)");
    w.source(i, path);
    cv::Mat g;
    m.convertTo(g, CV_32F, 1.0 / 255);
    // Crops from a fixed splitmix64 stream per (photo, scale): reproducible.
    for (int sc = 0; sc < 3; ++sc) {
      const double f_scale = double(kShort[sc]) / std::min(g.rows, g.cols);
      cv::Mat s;
      cv::resize(g, s, cv::Size(), f_scale, f_scale, f_scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
      uint64_t state = 0x5eedULL + i * 1000 + sc;
      auto next = [&state] {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
      };
      for (int k = 0; k < kCropsPerScale; ++k) {
        const int y = int(next() % uint64_t(s.rows - 27)), x = int(next() % uint64_t(s.cols - 27));
        w.add(is_val(i), to_tensor(s(cv::Rect(x, y, 28, 28)).clone()), int(i));
      }
    }
    ++i;
  }
  return w.write(root, "photos", std::to_string(i) + " scikit-image photographs and textures, " +
                                     std::to_string(3 * kCropsPerScale) + " crops each");
}

}  // namespace

const std::vector<std::string>& evaluation_only_datasets() {
  static const std::vector<std::string> names = {"letters", "icons", "photos"};
  return names;
}

const std::vector<std::string>& validation_only_datasets() {
  static const std::vector<std::string> names = {"glyphs"};
  return names;
}

std::string build_evaluation_set(const std::string& name, const std::string& root) {
  if (name == "letters") return build_letters(root);
  if (name == "icons") return build_icons(root);
  if (name == "photos") return build_photos(root);
  if (name == "glyphs") return build_glyphs(root);
  throw UsageError("no evaluation set named '" + name + "'");
}

}  // namespace ebm
