// plots.cpp: OOD score histograms and ROC panels on the shared canvas (io/plot.h).
#include "ebm/ood/ood.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/io/plot.h"
#include "ebm/io/progress.h"
#include "format.h"

namespace ebm {

// ================================================================ plots

namespace {

std::string safe_name(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-') ? c : '-';
  return o;
}

std::string short_num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// Histogram of in-distribution (filled grey) vs one OOD set (black outline).
void plot_hist(const OodReport& r, const OodSetResult& o, const std::string& path) {
  const int64_t W = 720, H = 440, L = 64, R = 20, T = 66, B = 62;
  const int64_t pw = W - L - R, ph = H - T - B;
  Canvas c(W, H);
  const auto vin = to_vector(r.in_scores), vout = to_vector(o.scores);
  std::vector<double> all(vin);
  all.insert(all.end(), vout.begin(), vout.end());
  // The 0.5..99.5 percentile range of the pooled scores; outliers go to the edge bins.
  double lo = percentile(all, 0.5), hi = percentile(all, 99.5);
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const int nb = 60;
  auto hist = [&](const std::vector<double>& v) {
    std::vector<double> h(nb, 0.0);
    for (double x : v) {
      int b = int(std::floor((x - lo) / (hi - lo) * nb));
      h[std::clamp(b, 0, nb - 1)] += 1.0 / double(v.size());
    }
    return h;
  };
  const auto hin = hist(vin), hout = hist(vout);
  double ymax = 1e-12;
  for (int b = 0; b < nb; ++b) ymax = std::max({ymax, hin[b], hout[b]});
  ymax *= 1.08;
  auto X = [&](double v) { return L + (v - lo) / (hi - lo) * pw; };
  auto Y = [&](double f) { return T + ph - f / ymax * ph; };
  for (int b = 0; b < nb; ++b) {  // in-distribution: filled light grey
    const int64_t x0 = std::lround(L + double(b) * pw / nb), x1 = std::lround(L + double(b + 1) * pw / nb) - 1;
    if (hin[b] > 0) c.rect(x0, std::lround(Y(hin[b])), x1, T + ph, 0.72f);
  }
  double prev_y = T + ph;  // OOD: black step outline
  for (int b = 0; b < nb; ++b) {
    const double x0 = L + double(b) * pw / nb, x1 = L + double(b + 1) * pw / nb, y = Y(hout[b]);
    c.line(x0, prev_y, x0, y, 0.0f, 2);
    c.line(x0, y, x1, y, 0.0f, 2);
    prev_y = y;
  }
  c.line(L + pw, prev_y, L + pw, T + ph, 0.0f, 2);
  // The threshold that accepts 95% of the in-distribution set (fpr95's threshold).
  const auto roc = ood_roc_curve(vin, vout);
  for (size_t i = 0; i < roc.tpr.size(); ++i)
    if (roc.tpr[i] >= 0.95) {
      const double t = roc.thresholds[i];
      if (t >= lo && t <= hi) {
        c.line(X(t), T, X(t), T + ph, 0.35f, 1, 6, 4);
        const std::string lab = "95% IN ACCEPTED";
        const int64_t tx = std::lround(X(t)) + 4 + Canvas::text_width(lab) <= L + pw
                               ? std::lround(X(t)) + 4
                               : std::lround(X(t)) - 4 - Canvas::text_width(lab);
        c.text(tx, T + 4, lab, 1, 0.35f);
      }
      break;
    }
  // Axes, ticks, labels.
  c.line(L, T + ph, L + pw, T + ph, 0.0f);
  c.line(L, T, L, T + ph, 0.0f);
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    const int64_t x = std::lround(X(v));
    c.line(x, T + ph, x, T + ph + 4, 0.0f);
    const std::string s = short_num(v);
    c.text(x - Canvas::text_width(s) / 2, T + ph + 8, s);
    const double f = ymax * k / 4.0;
    const int64_t y = std::lround(Y(f));
    c.line(L - 4, y, L, y, 0.0f);
    char fb[32];
    std::snprintf(fb, sizeof fb, "%.3g", f);
    const std::string fs = fb;
    c.text(L - 6 - Canvas::text_width(fs), y - 3, fs);
  }
  const std::string xl = r.score + " (higher = more OOD)";
  c.text(L + pw / 2 - Canvas::text_width(xl) / 2, H - 22, xl);
  c.text(6, T - 14, "FRACTION PER BIN");
  const std::string title = r.score + ": " + r.in + " vs " + o.name + "   AUROC " + fmt("%.4f", o.metrics.auroc) +
                            "   FPR95 " + fmt("%.4f", o.metrics.fpr95);
  c.text(L, 8, title, 1);
  // Legend, above the plot.
  const int64_t ly = 28;
  c.rect(L, ly, L + 18, ly + 8, 0.72f);
  const int64_t w1 = c.text(L + 26, ly + 1, "IN " + r.in + " TEST (" + std::to_string(r.n_in) + ")");
  const int64_t lx = L + 26 + w1 + 30;
  c.line(lx, ly + 4, lx + 18, ly + 4, 0.0f, 2);
  c.text(lx + 26, ly + 1, "OOD " + o.name + " (" + std::to_string(o.n) + ")");
  c.save(path);
}

// ROC curves (in-distribution positive) for one score: one panel per OOD
// set (small multiples read better than overlaid grey curves).
void plot_roc(const OodReport& r, const std::string& path) {
  const int64_t n = int64_t(r.ood.size()), cols = std::min<int64_t>(3, n), rows = (n + cols - 1) / cols;
  const int64_t P = 240, ML = 56, MR = 24, MT = 44, MB = 40, top = 46;
  const int64_t cw = ML + P + MR, ch = MT + P + MB;
  Canvas c(std::max<int64_t>(cols * cw, 560), top + rows * ch);
  c.text(10, 8, "ROC " + r.score + ", IN " + r.in + " (" + std::to_string(r.n_in) + " TEST IMAGES), IN-DISTRIBUTION POSITIVE");
  c.text(10, 24, "X = OOD ACCEPTED (FPR), Y = IN ACCEPTED (TPR). DASHED: TPR 0.95, WHERE FPR95 IS READ (SQUARE)", 1, 0.3f);
  const auto vin = to_vector(r.in_scores);
  for (int64_t j = 0; j < n; ++j) {
    const auto& o = r.ood[j];
    const int64_t ox = (j % cols) * cw + ML, oy = top + (j / cols) * ch + MT;
    auto X = [&](double f) { return ox + f * P; };
    auto Y = [&](double t) { return oy + P - t * P; };
    c.text(ox, oy - 34, o.name + " (" + std::to_string(o.n) + ")");
    c.text(ox, oy - 20, "AUROC " + fmt("%.4f", o.metrics.auroc) + "  FPR95 " + fmt("%.4f", o.metrics.fpr95), 1, 0.3f);
    for (int k = 1; k < 4; ++k) {
      c.line(X(k / 4.0), oy, X(k / 4.0), oy + P, 0.9f);
      c.line(ox, Y(k / 4.0), ox + P, Y(k / 4.0), 0.9f);
    }
    c.polyline({{X(0), Y(0)}, {X(1), Y(1)}}, 0.6f, 1, 2, 4);
    c.polyline({{X(0), Y(0.95)}, {X(1), Y(0.95)}}, 0.4f, 1, 6, 4);
    const auto roc = ood_roc_curve(vin, to_vector(o.scores));
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < roc.fpr.size(); ++i) pts.emplace_back(X(roc.fpr[i]), Y(roc.tpr[i]));
    c.polyline(pts, 0.0f, 2);
    for (size_t i = 0; i < roc.tpr.size(); ++i)
      if (roc.tpr[i] >= 0.95) {
        const int64_t mx = std::lround(X(roc.fpr[i])), my = std::lround(Y(roc.tpr[i]));
        c.rect(mx - 3, my - 3, mx + 3, my + 3, 0.0f);
        break;
      }
    c.frame(ox, oy, ox + P, oy + P, 0.0f);
    for (int k = 0; k <= 2; ++k) {
      const std::string s = fmt("%.1f", k / 2.0);
      c.line(X(k / 2.0), oy + P, X(k / 2.0), oy + P + 3, 0.0f);
      c.text(std::lround(X(k / 2.0)) - Canvas::text_width(s) / 2, oy + P + 7, s);
      c.line(ox - 3, Y(k / 2.0), ox, Y(k / 2.0), 0.0f);
      c.text(ox - 6 - Canvas::text_width(s), std::lround(Y(k / 2.0)) - 3, s);
    }
    c.text(ox + P / 2 - Canvas::text_width("OOD ACCEPTED") / 2, oy + P + 20, "OOD ACCEPTED", 1, 0.3f);
  }
  c.save(path);
}

}  // namespace

std::vector<std::string> write_ood_plots(const std::vector<OodReport>& reports, const std::string& dir) {
  make_dirs(dir);
  std::vector<std::string> paths;
  for (const auto& r : reports) {
    for (const auto& o : r.ood) {
      const std::string p = dir + "/" + safe_name(r.score) + "-hist-" + safe_name(o.name) + ".png";
      plot_hist(r, o, p);
      paths.push_back(p);
    }
    const std::string p = dir + "/" + safe_name(r.score) + "-roc.png";
    plot_roc(r, p);
    paths.push_back(p);
  }
  return paths;
}

}  // namespace ebm
