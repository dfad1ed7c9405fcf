// defend_plot.cpp: the robust-accuracy-vs-purification-steps curve as a PNG
// (OpenCV drawing, our own PNG writer), from a defend_eval report.
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <map>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/defend/defend.h"
#include "ebm/io/image_io.h"

namespace ebm {

void write_defend_plot(const nlohmann::json& report, const std::string& path) {
  // Series: clean accuracy after purification, and robust accuracy per threat.
  // x positions are the purification lengths, evenly spaced (0, 10, 50, ...
  // are far from linear, and a log axis cannot show 0).
  std::vector<int64_t> xs;
  std::map<std::string, std::map<int64_t, double>> series;
  for (const auto& r : report.at("results")) {
    const int64_t S = r.at("purify_steps").get<int64_t>();
    if (std::find(xs.begin(), xs.end(), S) == xs.end()) xs.push_back(S);
    std::string th = r.at("threat").get<std::string>();
    series["clean"][S] = r.at("clean_accuracy").get<double>();
    // The undefended point starts every defended curve.
    if (th == "undefended") {
      series["grey-box"][S] = r.at("robust_accuracy").get<double>();
      if (report.at("attack") == "bpda-eot") series["adaptive"][S] = r.at("robust_accuracy").get<double>();
    } else {
      series[th][S] = r.at("robust_accuracy").get<double>();
    }
  }
  std::sort(xs.begin(), xs.end());
  const int W = 640, H = 420, L = 70, R = 170, T = 50, B = 60;
  const int pw = W - L - R, ph = H - T - B;
  cv::Mat img(H, W, CV_8UC1, cv::Scalar(255));
  auto X = [&](size_t i) { return xs.size() < 2 ? L + pw / 2 : L + int(double(i) * pw / double(xs.size() - 1)); };
  auto Y = [&](double a) { return T + int((1.0 - a) * ph); };
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  for (int k = 0; k <= 10; k += 2) {  // horizontal grid and y ticks
    const double a = k / 10.0;
    cv::line(img, {L, Y(a)}, {L + pw, Y(a)}, cv::Scalar(225), 1);
    char b[16];
    std::snprintf(b, sizeof b, "%.1f", a);
    cv::putText(img, b, {L - 40, Y(a) + 5}, font, 0.45, cv::Scalar(0), 1, cv::LINE_AA);
  }
  cv::rectangle(img, {L, T}, {L + pw, T + ph}, cv::Scalar(0), 1);
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string s = std::to_string(xs[i]);
    cv::line(img, {X(i), T + ph}, {X(i), T + ph + 5}, cv::Scalar(0), 1);
    cv::putText(img, s, {X(i) - 5 * int(s.size()), T + ph + 22}, font, 0.45, cv::Scalar(0), 1, cv::LINE_AA);
  }
  cv::putText(img, "Langevin purification steps", {L + pw / 2 - 110, H - 14}, font, 0.5, cv::Scalar(0), 1, cv::LINE_AA);
  char title[160];
  const std::string eps = report.at("eps").is_null() ? "" : " eps " + report.at("eps").dump();
  std::snprintf(title, sizeof title, "%s %s%s, n = %lld: accuracy vs purification",
                report.value("data", std::string()).c_str(), report.at("attack").get<std::string>().c_str(), eps.c_str(),
                (long long)report.at("n").get<int64_t>());
  cv::putText(img, title, {10, 24}, font, 0.5, cv::Scalar(0), 1, cv::LINE_AA);
  // Grey levels + line styles tell the series apart in a grayscale PNG.
  struct Style {
    const char* name;
    int grey, thick;
    bool dashed;
  };
  const Style styles[] = {{"clean", 150, 2, true}, {"grey-box", 90, 2, false}, {"adaptive", 0, 3, false}};
  int ly = T + 10;
  for (const auto& st : styles) {
    auto it = series.find(st.name);
    if (it == series.end()) continue;
    std::vector<cv::Point> pts;
    for (size_t i = 0; i < xs.size(); ++i)
      if (it->second.count(xs[i])) pts.push_back({X(i), Y(it->second.at(xs[i]))});
    for (size_t j = 1; j < pts.size(); ++j) {
      if (!st.dashed) {
        cv::line(img, pts[j - 1], pts[j], cv::Scalar(st.grey), st.thick, cv::LINE_AA);
        continue;
      }
      const cv::Point2d a = pts[j - 1], b = pts[j];
      const double len = cv::norm(b - a);
      for (double s = 0; s < len; s += 12) {
        const double e = std::min(len, s + 7);
        cv::line(img, a + (b - a) * (s / len), a + (b - a) * (e / len), cv::Scalar(st.grey), st.thick, cv::LINE_AA);
      }
    }
    for (const auto& p : pts) cv::circle(img, p, 4, cv::Scalar(st.grey), cv::FILLED, cv::LINE_AA);
    cv::line(img, {L + pw + 12, ly}, {L + pw + 40, ly}, cv::Scalar(st.grey), st.thick, cv::LINE_AA);
    const std::string lab = std::string(st.name) == "clean" ? "clean (purified)" : std::string(st.name) + " robust";
    cv::putText(img, lab, {L + pw + 46, ly + 5}, font, 0.42, cv::Scalar(0), 1, cv::LINE_AA);
    ly += 22;
  }
  auto t = torch::from_blob(img.data, {H, W}, torch::kUInt8).clone();
  write_file_atomic(path, encode_png(t));
}

}  // namespace ebm
