// defend_plot.cpp: the robust-accuracy-vs-purification-steps curve as a PNG
// (drawn on the shared io/plot.h canvas), from a defend_eval report.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include <cstdio>
#include <map>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/defend/defend.h"
#include "ebm/io/plot.h"

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
  Canvas c(W, H);
  auto X = [&](size_t i) { return xs.size() < 2 ? L + pw / 2.0 : L + double(i) * pw / double(xs.size() - 1); };
  auto Y = [&](double a) { return T + (1.0 - a) * ph; };
  for (int k = 0; k <= 10; k += 2) {  // horizontal grid and y ticks
    const double a = k / 10.0;
    c.line(L, Y(a), L + pw, Y(a), 0.88f);
    char b[16];
    std::snprintf(b, sizeof b, "%.1f", a);
    c.text(L - 8 - Canvas::text_width(b), std::lround(Y(a)) - 5, b);
  }
  c.polyline({{L, T}, {L + pw, T}, {L + pw, T + ph}, {L, T + ph}, {L, T}}, 0.0f);
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string s = std::to_string(xs[i]);
    c.line(X(i), T + ph, X(i), T + ph + 5, 0.0f);
    c.text(std::lround(X(i)) - Canvas::text_width(s) / 2, T + ph + 10, s);
  }
  const std::string xl = "Langevin purification steps";
  c.text(L + pw / 2 - Canvas::text_width(xl, 1.2) / 2, H - 24, xl, 1.2);
  char title[160];
  const std::string eps = report.at("eps").is_null() ? "" : " eps " + report.at("eps").dump();
  std::snprintf(title, sizeof title, "%s %s%s, n = %lld: accuracy vs purification",
                report.value("data", std::string()).c_str(), report.at("attack").get<std::string>().c_str(), eps.c_str(),
                (long long)report.at("n").get<int64_t>());
  c.text(10, 12, title, 1.2);
  // Grey levels + line styles tell the series apart in a grayscale PNG.
  struct Style {
    const char* name;
    float grey;
    int thick;
    bool dashed;
  };
  const Style styles[] = {{"clean", 0.6f, 2, true}, {"grey-box", 0.35f, 2, false}, {"adaptive", 0.0f, 3, false}};
  int ly = T + 10;
  for (const auto& st : styles) {
    auto it = series.find(st.name);
    if (it == series.end()) continue;
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < xs.size(); ++i)
      if (it->second.count(xs[i])) pts.emplace_back(X(i), Y(it->second.at(xs[i])));
    c.polyline(pts, st.grey, st.thick, st.dashed ? 7 : 0, st.dashed ? 5 : 0);
    for (const auto& [px, py] : pts) c.dot(px, py, 4, st.grey);
    c.line(L + pw + 12, ly, L + pw + 40, ly, st.grey, st.thick, st.dashed ? 7 : 0, st.dashed ? 5 : 0);
    const std::string lab = std::string(st.name) == "clean" ? "clean (purified)" : std::string(st.name) + " robust";
    c.text(L + pw + 46, ly - 6, lab);
    ly += 22;
  }
  c.save(path);
}

namespace {
std::string defend_heading(const nlohmann::json& rep) {
  const std::string attack = rep.at("attack").get<std::string>();
  char b[256];
  std::snprintf(b, sizeof b, "%s, attack %s%s, n = %lld, clean accuracy %.4f", rep.value("data", std::string()).c_str(),
                attack.c_str(),
                attack == "cw" || rep.at("eps").is_null() ? "" : (" eps " + rep.at("eps").dump()).c_str(),
                (long long)rep.at("n").get<int64_t>(), rep.at("clean_accuracy").get<double>());
  return b;
}
}  // namespace

std::string format_defend_table(const nlohmann::json& rep) {
  std::string s = defend_heading(rep) + "\n";
  char b[512];
  std::snprintf(b, sizeof b, "%-11s %-9s %12s %15s %16s\n", "threat", "attack", "purify_steps", "clean_accuracy",
                "robust_accuracy");
  s += b;
  for (const auto& r : rep.at("results")) {
    std::snprintf(b, sizeof b, "%-11s %-9s %12lld %15.4f %16.4f\n", r.at("threat").get<std::string>().c_str(),
                  r.at("attack").get<std::string>().c_str(), (long long)r.at("purify_steps").get<int64_t>(),
                  r.at("clean_accuracy").get<double>(), r.at("robust_accuracy").get<double>());
    s += b;
  }
  for (const auto& c : rep.value("sanity_checks", nlohmann::json::array())) {
    std::snprintf(b, sizeof b, "sanity %-15s %-11s %s  %s\n", c.at("name").get<std::string>().c_str(),
                  c.at("threat").get<std::string>().c_str(), c.at("passed").get<bool>() ? "ok    " : "FAILED",
                  c.at("points").dump().c_str());
    s += b;
  }
  return s;
}

std::string format_defend_markdown(const nlohmann::json& rep) {
  std::string s = defend_heading(rep) + ".\n\n| threat | attack | purification steps | clean accuracy | robust accuracy |\n"
                                        "|---|---|---:|---:|---:|\n";
  char b[256];
  for (const auto& r : rep.at("results")) {
    std::snprintf(b, sizeof b, "| %s | %s | %lld | %.4f | %.4f |\n", r.at("threat").get<std::string>().c_str(),
                  r.at("attack").get<std::string>().c_str(), (long long)r.at("purify_steps").get<int64_t>(),
                  r.at("clean_accuracy").get<double>(), r.at("robust_accuracy").get<double>());
    s += b;
  }
  return s;
}

}  // namespace ebm
