#include "ebm/train/outliers.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "ebm/core/common.h"

namespace ebm {

namespace {

// Uniform double in [a,b) from gen (one draw of the generator's stream).
double unif(at::Generator& gen, double a, double b) {
  return a + (b - a) * torch::rand({1}, gen, torch::kFloat64).item<double>();
}
int64_t randint(at::Generator& gen, int64_t n) { return torch::randint(n, {1}, gen, torch::kInt64).item<int64_t>(); }

// Pixel-centre coordinates [H*W,2] (row, col).
torch::Tensor pixel_grid(int64_t h, int64_t w) {
  auto r = torch::arange(h, torch::kFloat64).view({h, 1}).expand({h, w});
  auto c = torch::arange(w, torch::kFloat64).view({1, w}).expand({h, w});
  return torch::stack({r.reshape(-1), c.reshape(-1)}, 1);
}

}  // namespace

const std::vector<std::string>& outlier_kinds() {
  static const std::vector<std::string> k{"pixel-shuffle", "patch-shuffle", "blur", "mixup",
                                          "uniform",       "invert",        "strokes", "shapes",
                                          "flip",          "lines",         "splice", "smooth"};
  return k;
}

std::vector<std::string> outlier_test_sets(const std::vector<std::string>& kinds) {
  std::vector<std::string> out;
  for (const auto& k : kinds) {
    if (k == "uniform") out.push_back("uniform");
    if (k == "invert") out.push_back("invert:*");
    if (k == "flip") out.push_back("vflip:*");
  }
  return out;
}

torch::Tensor draw_polyline(const torch::Tensor& pts, double r, double v, int64_t h, int64_t w) {
  TORCH_CHECK(pts.dim() == 2 && pts.size(1) == 2 && pts.size(0) >= 2, "draw_polyline: pts must be [P>=2,2], got ",
              pts.sizes());
  const auto p = pixel_grid(h, w);                      // [HW,2]
  const auto a = pts.narrow(0, 0, pts.size(0) - 1).to(torch::kFloat64);  // [S,2] segment starts
  const auto b = pts.narrow(0, 1, pts.size(0) - 1).to(torch::kFloat64);  // [S,2] segment ends
  const auto ab = b - a;                                                 // [S,2]
  const auto len2 = (ab * ab).sum(1).clamp_min(1e-12);                   // [S]
  const auto ap = p.unsqueeze(1) - a.unsqueeze(0);                       // [HW,S,2]
  const auto t = ((ap * ab.unsqueeze(0)).sum(2) / len2).clamp(0, 1);     // [HW,S] projection onto each segment
  const auto d = (ap - t.unsqueeze(2) * ab.unsqueeze(0)).pow(2).sum(2).amin(1).sqrt();  // [HW]
  return (v * (r + 0.5 - d).clamp(0, 1)).view({h, w}).to(torch::kFloat32);
}

torch::Tensor draw_strokes(int64_t n, int64_t h, int64_t w, at::Generator& gen) {
  const double sy = h / 28.0, sx = w / 28.0;
  auto out = torch::zeros({n, 1, h, w});
  const auto t = torch::linspace(0, 1, 24, torch::kFloat64).view({-1, 1});  // 24 points per curve
  for (int64_t i = 0; i < n; ++i) {
    const int64_t strokes = 1 + randint(gen, 3);
    for (int64_t s = 0; s < strokes; ++s) {
      std::vector<torch::Tensor> c;
      for (int k = 0; k < 4; ++k)
        c.push_back(torch::tensor({unif(gen, 4, 24) * sy, unif(gen, 4, 24) * sx}, torch::kFloat64).view({1, 2}));
      const double r = unif(gen, 0.7, 2.0) * std::min(sy, sx), v = unif(gen, 0.7, 1.0);
      const auto u = 1 - t;
      const auto pts = u.pow(3) * c[0] + 3 * u.pow(2) * t * c[1] + 3 * u * t.pow(2) * c[2] + t.pow(3) * c[3];
      out[i][0] = torch::max(out[i][0], draw_polyline(pts, r, v, h, w));
    }
  }
  return out;
}

torch::Tensor draw_shapes(int64_t n, int64_t h, int64_t w, at::Generator& gen) {
  const double sy = h / 28.0, sx = w / 28.0;
  const auto p = pixel_grid(h, w);
  auto out = torch::zeros({n, 1, h, w});
  for (int64_t i = 0; i < n; ++i) {
    auto img = torch::zeros({h * w}, torch::kFloat64);
    const int64_t shapes = 1 + randint(gen, 3);
    for (int64_t s = 0; s < shapes; ++s) {
      const double cy = unif(gen, 6, 22) * sy, cx = unif(gen, 6, 22) * sx;
      const double ay = unif(gen, 2, 10) * sy, ax = unif(gen, 2, 10) * sx, th = unif(gen, 0, M_PI);
      const bool ellipse = randint(gen, 2) == 0, shaded = randint(gen, 2) == 0;
      const double g0 = unif(gen, 0.2, 1.0), g1 = unif(gen, 0.2, 1.0);
      // Shape-aligned coordinates in half-axis units.
      const auto dy = p.select(1, 0) - cy, dx = p.select(1, 1) - cx;
      const auto u = (std::cos(th) * dy + std::sin(th) * dx) / ay;
      const auto v = (-std::sin(th) * dy + std::cos(th) * dx) / ax;
      // Approximate signed distance to the edge in pixels (negative inside).
      const double scale = std::min(ay, ax);
      const auto sd = ellipse ? (torch::sqrt(u * u + v * v) - 1) * scale
                              : (torch::max(u.abs(), v.abs()) - 1) * scale;
      const auto cover = (0.5 - sd).clamp(0, 1);
      const auto grey = shaded ? g0 + (g1 - g0) * ((u + 1) / 2).clamp(0, 1) : torch::full_like(u, g0);
      img = img * (1 - cover) + grey * cover;
    }
    out[i][0] = img.view({h, w}).to(torch::kFloat32);
  }
  return out;
}

torch::Tensor draw_lines(int64_t n, int64_t h, int64_t w, at::Generator& gen) {
  auto out = torch::zeros({n, 1, h, w}, torch::kFloat32);
  const double sy = double(h) / 28.0, sx = double(w) / 28.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pieces = 1 + randint(gen, 3);
    torch::Tensor img = torch::zeros({h, w}, torch::kFloat32);
    for (int64_t s = 0; s < pieces; ++s) {
      const int64_t verts = 2 + randint(gen, 3);  // 1-3 straight segments with sharp corners
      auto pts = torch::empty({verts, 2}, torch::kFloat64);
      for (int64_t v = 0; v < verts; ++v) {
        pts[v][0] = (4.0 + unif(gen, 0.0, 20.0)) * sy;
        pts[v][1] = (4.0 + unif(gen, 0.0, 20.0)) * sx;
      }
      const double r = unif(gen, 0.7, 2.0) * std::min(sy, sx), v = unif(gen, 0.7, 1.0);
      img = torch::maximum(img, draw_polyline(pts, r, v, h, w));
    }
    out[i][0] = img;
  }
  return out;
}

torch::Tensor draw_smooth(int64_t n, int64_t h, int64_t w, at::Generator& gen) {
  auto out = torch::empty({n, 1, h, w}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = 2 + randint(gen, 4);  // a 2x2 .. 5x5 grid of control values
    const auto u = torch::rand({1, 1, g, g}, gen);
    auto f = torch::upsample_bilinear2d(u, {h, w}, /*align_corners=*/true);
    // Stretched after upsampling: interior grid points fall between pixels.
    const double lo = f.min().item<double>(), hi = f.max().item<double>();
    f = (f - lo) / std::max(hi - lo, 1e-6);
    const double range = unif(gen, kSmoothMinRange, 1.0), base = unif(gen, 0.0, 1.0 - range);
    out[i].copy_((base + range * f)[0]);
  }
  return out;
}

torch::Tensor splice_outlier(const torch::Tensor& a, const torch::Tensor& b, int64_t axis, int64_t cut) {
  TORCH_CHECK(a.sizes() == b.sizes() && a.dim() == 3, "splice_outlier: a and b must be the same [C,H,W], got ",
              a.sizes(), " and ", b.sizes());
  TORCH_CHECK(axis == 1 || axis == 2, "splice_outlier: axis must be 1 (rows) or 2 (columns), got ", axis);
  TORCH_CHECK(cut > 0 && cut < a.size(axis), "splice_outlier: cut must be in (0, ", a.size(axis), "), got ", cut);
  return torch::cat({a.narrow(axis, 0, cut), b.narrow(axis, cut, a.size(axis) - cut)}, axis);
}

static torch::Tensor flip_outlier(const torch::Tensor& x, at::Generator& gen) {
  const int64_t h = x.size(1), w = x.size(2);
  const double norm = x.norm().item<double>();
  const int64_t start = randint(gen, 4);
  for (int64_t t = 0; t < 4; ++t) {
    const int64_t op = (start + t) % 4;
    torch::Tensor o;
    if (op == 0) o = x.flip({2});                                  // mirror left-right
    else if (op == 1) o = x.flip({1});                             // upside down
    else if (op == 2 && h == w) o = x.transpose(1, 2).flip({2});   // rotate 90 degrees
    else if (op == 3 && h == w) o = x.transpose(1, 2).flip({1});   // rotate -90 degrees
    else continue;
    // Keep it only when it is visibly not the digit it came from.
    if (norm > 0 && (o - x).norm().item<double>() >= kFlipMinChange * norm) return o.contiguous();
  }
  return draw_strokes(1, h, w, gen)[0];
}

torch::Tensor synthesize_outliers(const torch::Tensor& x, at::Generator& gen, const std::vector<std::string>& kinds) {
  const auto& all = outlier_kinds();
  auto known = [&] {
    std::string s;
    for (const auto& k : all) s += (s.empty() ? "" : ", ") + k;
    return "(use " + s + ")";
  };
  if (kinds.empty()) throw UsageError("no outlier kind given " + known());
  std::vector<int64_t> ids;
  for (const auto& k : kinds) {
    const auto it = std::find(all.begin(), all.end(), k);
    if (it == all.end()) throw UsageError("unknown outlier kind '" + k + "' " + known());
    ids.push_back(int64_t(it - all.begin()));
  }
  const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
  auto kind = torch::randint(int64_t(ids.size()), {b}, gen, torch::kInt64);
  auto out = x.clone();
  auto flat = x.flatten(1);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t k = ids[kind[i].item<int64_t>()];
    torch::Tensor o;
    if (k == 0) {
      o = flat[i].index_select(0, torch::randperm(h * w, gen, torch::kInt64)).view({1, h, w});
    } else if (k == 1) {
      const int64_t p = 7, gh = h / p, gw = w / p;
      auto patches = x[i].view({1, gh, p, gw, p}).permute({1, 3, 0, 2, 4}).reshape({gh * gw, 1, p, p});
      patches = patches.index_select(0, torch::randperm(gh * gw, gen, torch::kInt64));
      o = patches.view({gh, gw, 1, p, p}).permute({2, 0, 3, 1, 4}).reshape({1, h, w});
    } else if (k == 2) {
      o = torch::avg_pool2d(x[i].unsqueeze(0), 9, 1, 4, /*ceil_mode=*/false, /*count_include_pad=*/false)[0];
    } else if (k == 3) {
      const int64_t j = torch::randint(b, {1}, gen, torch::kInt64).item<int64_t>();
      o = 0.5 * x[i] + 0.5 * x[j];
    } else if (k == 4) {
      o = torch::rand({1, h, w}, gen);
    } else if (k == 5) {
      o = 1.0 - x[i];
    } else if (k == 6) {
      o = draw_strokes(1, h, w, gen)[0];
    } else if (k == 7) {
      o = draw_shapes(1, h, w, gen)[0];
    } else if (k == 8) {
      o = flip_outlier(x[i], gen);
    } else if (k == 9) {
      o = draw_lines(1, h, w, gen)[0];
    } else if (k == 10) {
      // Another image of the batch (never the same one, when there is another).
      const int64_t j = b > 1 ? (i + 1 + randint(gen, b - 1)) % b : i;
      const int64_t axis = 1 + randint(gen, 2), n = axis == 1 ? h : w;
      const int64_t lo = n / 3, hi = n - n / 3;  // cut through the middle third
      o = splice_outlier(x[i], x[j], axis, lo + randint(gen, std::max<int64_t>(hi - lo, 1)));
    } else {
      o = draw_smooth(1, h, w, gen)[0];
    }
    out[i].copy_(o);
  }
  return out;
}

}  // namespace ebm
