// plot.cpp: Canvas on cv::Mat (CV_8UC1).
#include "ebm/io/plot.h"

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"

namespace ebm {

namespace {
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
// FONT_HERSHEY_SIMPLEX at scale 0.42 has cap height ~9 px: one text line of 13 px.
constexpr double kFontScale = 0.42;
cv::Scalar grey_of(float g) { return cv::Scalar(std::lround(std::clamp(g, 0.0f, 1.0f) * 255.0f)); }
// Axis-aligned segments (axes, grid lines, thresholds) are drawn crisp, in
// their exact grey; anti-aliasing would smear them over two pixel rows.
int line_type(double x0, double y0, double x1, double y1) { return x0 == x1 || y0 == y1 ? cv::LINE_8 : cv::LINE_AA; }
}  // namespace

struct Canvas::Impl {
  cv::Mat img;
};

Canvas::Canvas(int64_t w, int64_t h) : w_(w), h_(h), impl_(std::make_unique<Impl>()) {
  if (w <= 0 || h <= 0 || w > 16384 || h > 16384)
    throw UsageError("canvas size " + std::to_string(w) + "x" + std::to_string(h) + " is outside 1..16384");
  impl_->img = cv::Mat(int(h), int(w), CV_8UC1, cv::Scalar(255));
}

Canvas::~Canvas() = default;

void Canvas::rect(int64_t x0, int64_t y0, int64_t x1, int64_t y1, float grey) {
  cv::rectangle(impl_->img, cv::Point(int(std::min(x0, x1)), int(std::min(y0, y1))),
                cv::Point(int(std::max(x0, x1)), int(std::max(y0, y1))), grey_of(grey), cv::FILLED);
}

void Canvas::dot(double x, double y, int radius, float grey) {
  cv::circle(impl_->img, cv::Point(int(std::lround(x)), int(std::lround(y))), radius, grey_of(grey), cv::FILLED,
             cv::LINE_AA);
}

void Canvas::frame(double x0, double y0, double x1, double y1, float grey) {
  line(x0, y0, x1, y0, grey);
  line(x0, y1, x1, y1, grey);
  line(x0, y0, x0, y1, grey);
  line(x1, y0, x1, y1, grey);
}

void Canvas::line(double x0, double y0, double x1, double y1, float grey, int thickness, int on, int off) {
  polyline({{x0, y0}, {x1, y1}}, grey, thickness, on, off);
}

void Canvas::polyline(const std::vector<std::pair<double, double>>& pts, float grey, int thickness, int on, int off) {
  const auto colour = grey_of(grey);
  // cv::line takes integer points; 4 fractional bits keep sub-pixel positions.
  constexpr int kShift = 4;
  auto P = [](double x, double y) { return cv::Point(int(std::lround(x * 16)), int(std::lround(y * 16))); };
  double walked = 0;  // the dash pattern runs on across segments
  for (size_t i = 1; i < pts.size(); ++i) {
    const auto [x0, y0] = pts[i - 1];
    const auto [x1, y1] = pts[i];
    const double len = std::hypot(x1 - x0, y1 - y0);
    if (on <= 0 || len == 0) {
      cv::line(impl_->img, P(x0, y0), P(x1, y1), colour, thickness, line_type(x0, y0, x1, y1), kShift);
      walked += len;
      continue;
    }
    const double period = on + off;
    double s = 0;
    while (s < len) {
      const double phase = std::fmod(walked + s, period);
      const double seg_end = std::min(len, s + (phase < on ? on - phase : period - phase));
      if (phase < on) {
        const double a = s / len, b = seg_end / len;
        cv::line(impl_->img, P(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), P(x0 + b * (x1 - x0), y0 + b * (y1 - y0)),
                 colour, thickness, line_type(x0, y0, x1, y1), kShift);
      }
      s = seg_end + 1e-9;
    }
    walked += len;
  }
}

int64_t Canvas::text(int64_t x, int64_t y, const std::string& s, double scale, float grey) {
  int base = 0;
  const cv::Size sz = cv::getTextSize(s, kFont, kFontScale * scale, 1, &base);
  cv::putText(impl_->img, s, cv::Point(int(x), int(y) + sz.height), kFont, kFontScale * scale, grey_of(grey), 1,
              cv::LINE_AA);
  return sz.width;
}

int64_t Canvas::text_width(const std::string& s, double scale) {
  int base = 0;
  return cv::getTextSize(s, kFont, kFontScale * scale, 1, &base).width;
}

void Canvas::save(const std::string& path) const {
  const auto t = torch::from_blob(impl_->img.data, {h_, w_}, torch::kUInt8).clone();
  write_file_atomic(path, encode_png(t));
}

}  // namespace ebm
