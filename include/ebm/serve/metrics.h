// metrics.h: counters, gauges and histograms, rendered in the Prometheus text
// exposition format (version 0.0.4), written by hand because Debian ships no
// C++ Prometheus client.
//
// The format, as render() writes it (https://prometheus.io/docs/instrumenting/exposition_formats/):
//   # HELP <name> <help, with \ and newline escaped>
//   # TYPE <name> counter|gauge|histogram
//   <name>{<label>="<value, with \ " and newline escaped>",...} <value>
// Every family's samples follow its HELP and TYPE lines, contiguously. A
// histogram writes cumulative <name>_bucket{le="..."} lines ending in
// le="+Inf", then <name>_sum and <name>_count (= the +Inf bucket). Values are
// printed in the shortest %g form that round-trips, +Inf/-Inf/NaN spelled so.
//
// Thread safety: every method may be called from any thread; one mutex per
// registry (a sample costs ~50 ns, nothing next to a forward pass).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ebm::serve {

/// Label values in the order of the family's label names.
using LabelValues = std::vector<std::string>;

class MetricsRegistry {
 public:
  /// Declare a family. Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
  /// [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"; std::invalid_argument
  /// otherwise, or when a name is declared twice. Histogram bounds must be
  /// finite and strictly increasing; +Inf is implicit.
  void counter(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  void gauge(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  void histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                 std::vector<std::string> labels = {});
  /// A gauge whose value is read from `fn` at render time (e.g. queue depth).
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);

  /// Counters only; v >= 0.
  void inc(const std::string& name, const LabelValues& labels = {}, double v = 1.0);
  /// Gauges only.
  void set(const std::string& name, double v, const LabelValues& labels = {});
  /// Histograms only: add one observation.
  void observe(const std::string& name, double v, const LabelValues& labels = {});

  /// Current value of a counter or gauge series (0 if never touched); for a
  /// histogram, its count. For tests and derived gauges.
  double value(const std::string& name, const LabelValues& labels = {}) const;

  /// The whole registry in the text exposition format, families in
  /// declaration order, series in label order.
  std::string render() const;

  /// The Content-Type of render()'s output.
  static const char* content_type() { return "text/plain; version=0.0.4; charset=utf-8"; }

 private:
  enum class Kind { Counter, Gauge, Histogram, GaugeFn };
  struct Series {
    double value = 0;              // counter / gauge
    std::vector<uint64_t> counts;  // histogram: per bucket (not cumulative), last = +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string name, help;
    Kind kind;
    std::vector<std::string> labels;
    std::vector<double> bounds;
    std::function<double()> fn;
    std::map<LabelValues, Series> series;
  };
  Family& declare(const std::string& name, const std::string& help, Kind kind, std::vector<std::string> labels);
  Family& find(const std::string& name, Kind kind);
  Series& series(Family& f, const LabelValues& labels);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;
};

/// Escape a label value: backslash, double quote and newline.
std::string escape_label_value(const std::string& v);
/// A sample value as the format spells it: +Inf, -Inf, NaN, else the shortest round-tripping %g.
std::string format_sample_value(double v);

}  // namespace ebm::serve
