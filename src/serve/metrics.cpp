#include "ebm/serve/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <stdexcept>

namespace ebm::serve {

namespace {

bool valid_metric_name(const std::string& s) {
  static const std::regex re("[a-zA-Z_:][a-zA-Z0-9_:]*");
  return std::regex_match(s, re);
}
bool valid_label_name(const std::string& s) {
  static const std::regex re("[a-zA-Z_][a-zA-Z0-9_]*");
  return std::regex_match(s, re) && s.rfind("__", 0) != 0;
}

std::string escape_help(const std::string& h) {
  std::string out;
  for (char c : h) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// {a="x",b="y"} plus an optional extra label (le for buckets); "" when empty.
std::string label_set(const std::vector<std::string>& names, const LabelValues& values, const std::string& extra_name = "",
                      const std::string& extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  if (!extra_name.empty()) out += (out.empty() ? "" : ",") + extra_name + "=\"" + extra_value + "\"";
  return out.empty() ? "" : "{" + out + "}";
}

}  // namespace

std::string escape_label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_sample_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // The shortest %g spelling that reads back as v (0.005, not 0.0050000000000000001).
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {  // whole numbers as integers: 10, not 1e+01
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

MetricsRegistry::Family& MetricsRegistry::declare(const std::string& name, const std::string& help, Kind kind,
                                                  std::vector<std::string> labels) {
  if (!valid_metric_name(name)) throw std::invalid_argument("metric name '" + name + "' is not [a-zA-Z_:][a-zA-Z0-9_:]*");
  for (const auto& l : labels)
    if (!valid_label_name(l) || (kind == Kind::Histogram && l == "le"))
      throw std::invalid_argument("metric " + name + ": bad label name '" + l + "'");
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& f : families_)
    if (f->name == name) throw std::invalid_argument("metric " + name + " declared twice");
  auto f = std::make_unique<Family>();
  f->name = name;
  f->help = help;
  f->kind = kind;
  f->labels = std::move(labels);
  families_.push_back(std::move(f));
  return *families_.back();
}

void MetricsRegistry::counter(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  declare(name, help, Kind::Counter, std::move(labels));
}
void MetricsRegistry::gauge(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  declare(name, help, Kind::Gauge, std::move(labels));
}
void MetricsRegistry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                std::vector<std::string> labels) {
  for (size_t i = 0; i < bounds.size(); ++i)
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
      throw std::invalid_argument("histogram " + name + ": bucket bounds must be finite and strictly increasing");
  auto& f = declare(name, help, Kind::Histogram, std::move(labels));
  std::lock_guard<std::mutex> lk(mu_);
  f.bounds = std::move(bounds);
}
void MetricsRegistry::gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn) {
  auto& f = declare(name, help, Kind::GaugeFn, {});
  std::lock_guard<std::mutex> lk(mu_);
  f.fn = std::move(fn);
}

MetricsRegistry::Family& MetricsRegistry::find(const std::string& name, Kind kind) {
  for (auto& f : families_)
    if (f->name == name) {
      if (f->kind != kind) throw std::invalid_argument("metric " + name + " used as the wrong type");
      return *f;
    }
  throw std::invalid_argument("metric " + name + " was never declared");
}

MetricsRegistry::Series& MetricsRegistry::series(Family& f, const LabelValues& labels) {
  if (labels.size() != f.labels.size())
    throw std::invalid_argument("metric " + f.name + ": " + std::to_string(labels.size()) + " label values for " +
                                std::to_string(f.labels.size()) + " labels");
  auto it = f.series.find(labels);
  if (it == f.series.end()) {
    Series s;
    if (f.kind == Kind::Histogram) s.counts.assign(f.bounds.size() + 1, 0);
    it = f.series.emplace(labels, std::move(s)).first;
  }
  return it->second;
}

void MetricsRegistry::inc(const std::string& name, const LabelValues& labels, double v) {
  if (!(v >= 0)) throw std::invalid_argument("counter " + name + ": increment " + std::to_string(v) + " < 0");
  std::lock_guard<std::mutex> lk(mu_);
  series(find(name, Kind::Counter), labels).value += v;
}

void MetricsRegistry::set(const std::string& name, double v, const LabelValues& labels) {
  std::lock_guard<std::mutex> lk(mu_);
  series(find(name, Kind::Gauge), labels).value = v;
}

void MetricsRegistry::observe(const std::string& name, double v, const LabelValues& labels) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& f = find(name, Kind::Histogram);
  auto& s = series(f, labels);
  size_t b = 0;
  while (b < f.bounds.size() && !(v <= f.bounds[b])) ++b;  // le: v <= bound; NaN lands in +Inf
  ++s.counts[b];
  s.sum += v;
  ++s.count;
}

double MetricsRegistry::value(const std::string& name, const LabelValues& labels) const {
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& f : families_) {
    if (f->name != name) continue;
    if (f->kind == Kind::GaugeFn) return f->fn();
    auto it = f->series.find(labels);
    if (it == f->series.end()) return 0;
    return f->kind == Kind::Histogram ? double(it->second.count) : it->second.value;
  }
  throw std::invalid_argument("metric " + name + " was never declared");
}

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::string out;
  for (const auto& fp : families_) {
    const Family& f = *fp;
    const char* type = f.kind == Kind::Counter ? "counter" : f.kind == Kind::Histogram ? "histogram" : "gauge";
    out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + " " + type + "\n";
    if (f.kind == Kind::GaugeFn) {
      out += f.name + " " + format_sample_value(f.fn()) + "\n";
      continue;
    }
    // An unlabelled family shows its zero value before the first sample, so
    // that dashboards see the series from the start.
    if (f.series.empty() && f.labels.empty()) {
      if (f.kind == Kind::Histogram) {
        for (double b : f.bounds) out += f.name + "_bucket{le=\"" + format_sample_value(b) + "\"} 0\n";
        out += f.name + "_bucket{le=\"+Inf\"} 0\n" + f.name + "_sum 0\n" + f.name + "_count 0\n";
      } else {
        out += f.name + " 0\n";
      }
      continue;
    }
    for (const auto& [labels, s] : f.series) {
      if (f.kind != Kind::Histogram) {
        out += f.name + label_set(f.labels, labels) + " " + format_sample_value(s.value) + "\n";
        continue;
      }
      uint64_t cum = 0;
      for (size_t b = 0; b < f.bounds.size(); ++b) {
        cum += s.counts[b];
        out += f.name + "_bucket" + label_set(f.labels, labels, "le", format_sample_value(f.bounds[b])) + " " +
               std::to_string(cum) + "\n";
      }
      cum += s.counts.back();
      out += f.name + "_bucket" + label_set(f.labels, labels, "le", "+Inf") + " " + std::to_string(cum) + "\n";
      out += f.name + "_sum" + label_set(f.labels, labels) + " " + format_sample_value(s.sum) + "\n";
      out += f.name + "_count" + label_set(f.labels, labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace ebm::serve
