// defend_plot.cpp: DefendReport's writers: the robust-accuracy-vs-purification
// curve as a PNG (on the shared io/plot.h canvas), JSON, text and Markdown.
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

void write_defend_plot(const DefendReport& report, const std::string& path) {
  // Series: clean accuracy after purification, and robust accuracy per threat.
  // x positions are the purification lengths, evenly spaced (0, 10, 50, ...
  // are far from linear, and a log axis cannot show 0).
  std::vector<int64_t> xs;
  std::map<std::string, std::map<int64_t, double>> series;
  for (const auto& r : report.rows) {
    const int64_t S = r.purify_steps;
    if (std::find(xs.begin(), xs.end(), S) == xs.end()) xs.push_back(S);
    series["clean"][S] = r.clean_accuracy;
    // The undefended point starts every defended curve.
    if (r.threat == "undefended") {
      series["grey-box"][S] = r.robust_accuracy;
      if (report.attack == "bpda-eot") series["adaptive"][S] = r.robust_accuracy;
    } else {
      series[r.threat][S] = r.robust_accuracy;
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
  const std::string eps = std::isnan(report.eps) ? "" : " eps " + nlohmann::json(report.eps).dump();
  std::snprintf(title, sizeof title, "%s %s%s, n = %lld: accuracy vs purification", report.data.c_str(),
                report.attack.c_str(), eps.c_str(), (long long)report.n);
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

// ================================================================ DefendReport

namespace {
using json = nlohmann::json;

std::string heading(const DefendReport& r) {
  char b[256];
  const std::string eps = r.attack == "cw" || std::isnan(r.eps) ? "" : " eps " + json(r.eps).dump();
  std::snprintf(b, sizeof b, "%s, attack %s%s, n = %lld, clean accuracy %.4f", r.data.c_str(), r.attack.c_str(),
                eps.c_str(), (long long)r.n, r.clean_accuracy);
  return b;
}

template <class T>
T field(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw DataError("defence report: " + where + " has no \"" + key + "\"");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    throw DataError("defence report: " + where + " \"" + key + "\": " + e.what());
  }
}
}  // namespace

std::vector<std::string> DefendReport::sanity_failed() const {
  std::vector<std::string> out;
  for (const auto& c : sanity)
    if (!c.passed) out.push_back(c.name + " (" + c.threat + ")");
  return out;
}

json DefendReport::to_json() const {
  json j = details;
  j["attack"] = attack;
  j["eps"] = std::isnan(eps) ? json(nullptr) : json(eps);
  j["n"] = n;
  j["data"] = data;
  j["split"] = split;
  j["clean_accuracy"] = clean_accuracy;
  json res = json::array();
  for (const auto& r : rows) {
    json o = r.extra;
    o.update({{"threat", r.threat}, {"attack", r.attack}, {"purify_steps", r.purify_steps},
              {"clean_accuracy", r.clean_accuracy}, {"robust_accuracy", r.robust_accuracy}});
    res.push_back(o);
  }
  j["results"] = res;
  json checks = json::array();
  for (const auto& c : sanity) {
    json o = c.extra;
    o.update({{"name", c.name}, {"threat", c.threat}, {"purify_steps", c.purify_steps}, {"passed", c.passed},
              {"points", c.points}});
    checks.push_back(o);
  }
  j["sanity_checks"] = checks;
  j["sanity_failed"] = sanity_failed();
  return j;
}

DefendReport DefendReport::from_json(const json& j) {
  DefendReport r;
  r.attack = field<std::string>(j, "attack", "the report");
  r.eps = j.contains("eps") && j["eps"].is_number() ? j["eps"].get<double>() : std::nan("");
  r.n = field<int64_t>(j, "n", "the report");
  r.data = j.value("data", std::string());
  r.split = j.value("split", std::string("test"));
  r.clean_accuracy = field<double>(j, "clean_accuracy", "the report");
  for (const auto& o : j.value("results", json::array())) {
    DefendRow row;
    row.threat = field<std::string>(o, "threat", "a result");
    row.attack = field<std::string>(o, "attack", "a result");
    row.purify_steps = field<int64_t>(o, "purify_steps", "a result");
    row.clean_accuracy = field<double>(o, "clean_accuracy", "a result");
    row.robust_accuracy = field<double>(o, "robust_accuracy", "a result");
    for (const auto& [k, v] : o.items())
      if (k != "threat" && k != "attack" && k != "purify_steps" && k != "clean_accuracy" && k != "robust_accuracy")
        row.extra[k] = v;
    r.rows.push_back(row);
  }
  for (const auto& o : j.value("sanity_checks", json::array())) {
    DefendSanityCheck c;
    c.name = field<std::string>(o, "name", "a sanity check");
    c.threat = field<std::string>(o, "threat", "a sanity check");
    c.purify_steps = o.value("purify_steps", int64_t{0});
    c.passed = field<bool>(o, "passed", "a sanity check");
    c.points = o.value("points", json::array());
    for (const auto& [k, v] : o.items())
      if (k != "name" && k != "threat" && k != "purify_steps" && k != "passed" && k != "points") c.extra[k] = v;
    r.sanity.push_back(c);
  }
  static const char* kTyped[] = {"attack", "eps", "n", "data", "split", "clean_accuracy", "results",
                                 "sanity_checks", "sanity_failed"};
  for (const auto& [k, v] : j.items())
    if (std::find(std::begin(kTyped), std::end(kTyped), k) == std::end(kTyped)) r.details[k] = v;
  return r;
}

std::string DefendReport::to_text() const {
  std::string s = heading(*this) + "\n";
  char b[512];
  std::snprintf(b, sizeof b, "%-11s %-9s %12s %15s %16s\n", "threat", "attack", "purify_steps", "clean_accuracy",
                "robust_accuracy");
  s += b;
  for (const auto& r : rows) {
    std::snprintf(b, sizeof b, "%-11s %-9s %12lld %15.4f %16.4f\n", r.threat.c_str(), r.attack.c_str(),
                  (long long)r.purify_steps, r.clean_accuracy, r.robust_accuracy);
    s += b;
  }
  for (const auto& c : sanity) {
    std::snprintf(b, sizeof b, "sanity %-15s %-11s %s  %s\n", c.name.c_str(), c.threat.c_str(),
                  c.passed ? "ok    " : "FAILED", c.points.dump().c_str());
    s += b;
  }
  return s;
}

std::string DefendReport::to_markdown() const {
  std::string s = heading(*this) + ".\n\n| threat | attack | purification steps | clean accuracy | robust accuracy |\n"
                                   "|---|---|---:|---:|---:|\n";
  char b[256];
  for (const auto& r : rows) {
    std::snprintf(b, sizeof b, "| %s | %s | %lld | %.4f | %.4f |\n", r.threat.c_str(), r.attack.c_str(),
                  (long long)r.purify_steps, r.clean_accuracy, r.robust_accuracy);
    s += b;
  }
  return s;
}

}  // namespace ebm
