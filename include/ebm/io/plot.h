// plot.h: the one plotting module: a grey-level canvas drawn with OpenCV
// (imgproc: anti-aliased lines, Hershey text) and saved as PNG atomically.
// OOD histograms and ROC panels (ood/) and the defence curves (defend/) all
// draw on it; grey levels and dash patterns, not colour, tell series apart.
//
// Coordinates are pixels, origin top-left; grey levels are in [0,1]
// (0 = black, 1 = white).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ebm {

class Canvas {
 public:
  /// A white canvas of w x h pixels.
  Canvas(int64_t w, int64_t h);
  ~Canvas();
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;

  int64_t width() const { return w_; }
  int64_t height() const { return h_; }

  /// Filled rectangle between two corners (inclusive).
  void rect(int64_t x0, int64_t y0, int64_t x1, int64_t y1, float grey);
  /// Outline of the rectangle between two corners, one pixel wide (a plot's frame).
  void frame(double x0, double y0, double x1, double y1, float grey);
  /// Filled disc.
  void dot(double x, double y, int radius, float grey);
  /// Line of `thickness` pixels; dashed with {on, off} pixels when on > 0.
  void line(double x0, double y0, double x1, double y1, float grey, int thickness = 1, int on = 0, int off = 0);
  /// Connected segments with one continuous dash pattern along their length.
  void polyline(const std::vector<std::pair<double, double>>& pts, float grey, int thickness = 1, int on = 0,
                int off = 0);
  /// Text with its top-left corner at (x, y) at `scale` (1 = 13 px high);
  /// returns the width drawn.
  int64_t text(int64_t x, int64_t y, const std::string& s, double scale = 1.0, float grey = 0.0f);
  /// Width `text` would draw.
  static int64_t text_width(const std::string& s, double scale = 1.0);

  /// Write the canvas as an 8-bit grey PNG (atomically).
  void save(const std::string& path) const;

 private:
  int64_t w_, h_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ebm
