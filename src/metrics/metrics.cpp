// metrics.cpp: see metrics.h for the definitions. Every metric is computed
// from one sort of the pooled scores, grouped into distinct values (a tie
// group is one threshold step, which is how scikit-learn treats ties).
#include "ebm/metrics/metrics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "ebm/core/common.h"

namespace ebm {

namespace {

// One distinct score value and how many items of each class have it.
struct Group {
  double value;
  int64_t pos, neg;
};

void check_scores(const std::vector<double>& s, const char* what) {
  if (s.empty()) throw UsageError(std::string("metrics: the ") + what + " set is empty; need at least one score");
  for (size_t i = 0; i < s.size(); ++i)
    if (!std::isfinite(s[i]))
      throw UsageError(std::string("metrics: ") + what + " score #" + std::to_string(i) +
                       " is not finite (" + std::to_string(s[i]) + ")");
}

// Groups of distinct values in DECREASING order of value.
std::vector<Group> group_desc(const std::vector<double>& pos, const std::vector<double>& neg) {
  std::vector<std::pair<double, int>> all;
  all.reserve(pos.size() + neg.size());
  for (double v : pos) all.emplace_back(v, 1);
  for (double v : neg) all.emplace_back(v, 0);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<Group> g;
  for (const auto& [v, y] : all) {
    if (g.empty() || g.back().value != v) g.push_back({v, 0, 0});
    (y ? g.back().pos : g.back().neg) += 1;
  }
  return g;
}

// Step-wise average precision of the positives over groups visited in the
// given order (the order of decreasing "positive-ness").
template <class It>
double ap_over(It begin, It end, int64_t n_pos, bool pos_is_pos) {
  double ap = 0, prev_recall = 0;
  int64_t tp = 0, fp = 0;
  for (It it = begin; it != end; ++it) {
    tp += pos_is_pos ? it->pos : it->neg;
    fp += pos_is_pos ? it->neg : it->pos;
    const double recall = double(tp) / double(n_pos);
    const double precision = double(tp) / double(tp + fp);
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
  }
  return ap;
}

// Trapezoidal area under (fpr, tpr) over groups in decreasing score order.
double auc_over(const std::vector<Group>& g, int64_t n_pos, int64_t n_neg) {
  double area = 0, f0 = 0, t0 = 0;
  int64_t tp = 0, fp = 0;
  for (const auto& x : g) {
    tp += x.pos;
    fp += x.neg;
    const double f = double(fp) / double(n_neg), t = double(tp) / double(n_pos);
    area += (f - f0) * (t + t0) / 2.0;
    f0 = f;
    t0 = t;
  }
  return area;
}

void split_labels(const std::vector<double>& scores, const std::vector<int>& labels,
                  std::vector<double>& pos, std::vector<double>& neg) {
  if (scores.size() != labels.size())
    throw UsageError("metrics: " + std::to_string(scores.size()) + " scores but " +
                     std::to_string(labels.size()) + " labels");
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 0 && labels[i] != 1)
      throw UsageError("metrics: label #" + std::to_string(i) + " is " + std::to_string(labels[i]) + ", want 0 or 1");
    (labels[i] ? pos : neg).push_back(scores[i]);
  }
  check_scores(pos, "positive");
  check_scores(neg, "negative");
}

}  // namespace

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<double> pos, neg;
  split_labels(scores, labels, pos, neg);
  const auto g = group_desc(pos, neg);
  RocCurve r;
  r.fpr.push_back(0);
  r.tpr.push_back(0);
  r.thresholds.push_back(std::numeric_limits<double>::infinity());
  int64_t tp = 0, fp = 0;
  for (const auto& x : g) {
    tp += x.pos;
    fp += x.neg;
    r.fpr.push_back(double(fp) / double(neg.size()));
    r.tpr.push_back(double(tp) / double(pos.size()));
    r.thresholds.push_back(x.value);
  }
  return r;
}

double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<double> pos, neg;
  split_labels(scores, labels, pos, neg);
  return auc_over(group_desc(pos, neg), pos.size(), neg.size());
}

double average_precision(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<double> pos, neg;
  split_labels(scores, labels, pos, neg);
  const auto g = group_desc(pos, neg);
  return ap_over(g.begin(), g.end(), pos.size(), true);
}

OodMetrics ood_metrics(const std::vector<double>& s_in, const std::vector<double>& s_ood) {
  check_scores(s_in, "in-distribution");
  check_scores(s_ood, "OOD");
  const int64_t ni = s_in.size(), no = s_ood.size();
  // Positive = OOD, groups by decreasing s (most OOD first).
  const auto g = group_desc(s_ood, s_in);
  OodMetrics m;
  m.n_in = ni;
  m.n_ood = no;
  m.auroc = auc_over(g, no, ni);
  m.aupr_out = ap_over(g.begin(), g.end(), no, true);
  // In-distribution positive, ranked by -s: the same groups in increasing s.
  m.aupr_in = ap_over(g.rbegin(), g.rend(), ni, false);
  // ROC with in-distribution positive, walked from "accept nothing" upward.
  int64_t acc_in = 0, acc_ood = 0;
  bool have95 = false;
  m.detection_error = 0.5;  // the "accept nothing" point: 0.5*(1-0) + 0.5*0
  for (auto it = g.rbegin(); it != g.rend(); ++it) {
    acc_in += it->neg;
    acc_ood += it->pos;
    const double tpr = double(acc_in) / double(ni), fpr = double(acc_ood) / double(no);
    if (!have95 && tpr >= 0.95) {
      m.fpr95 = fpr;
      have95 = true;
    }
    m.detection_error = std::min(m.detection_error, 0.5 * (1.0 - tpr) + 0.5 * fpr);
  }
  TORCH_INTERNAL_ASSERT(have95, "tpr must reach 1");
  return m;
}

OodMetrics ood_metrics(const torch::Tensor& s_in, const torch::Tensor& s_ood) {
  return ood_metrics(to_vector(s_in), to_vector(s_ood));
}

double fpr_at_tpr(const std::vector<double>& s_in, const std::vector<double>& s_ood, double tpr_level) {
  if (!(tpr_level > 0 && tpr_level <= 1))
    throw UsageError("fpr_at_tpr: tpr level must be in (0,1], got " + std::to_string(tpr_level));
  const auto r = ood_roc_curve(s_in, s_ood);
  for (size_t i = 0; i < r.tpr.size(); ++i)
    if (r.tpr[i] >= tpr_level) return r.fpr[i];
  TORCH_INTERNAL_ASSERT(false, "tpr must reach 1");
  return 1.0;
}

RocCurve ood_roc_curve(const std::vector<double>& s_in, const std::vector<double>& s_ood) {
  check_scores(s_in, "in-distribution");
  check_scores(s_ood, "OOD");
  // roc_curve(1 - y_ood, -s): thresholds on -s decreasing = on s increasing.
  std::vector<double> neg_in(s_in.size()), neg_ood(s_ood.size());
  std::transform(s_in.begin(), s_in.end(), neg_in.begin(), [](double v) { return -v; });
  std::transform(s_ood.begin(), s_ood.end(), neg_ood.begin(), [](double v) { return -v; });
  const auto g = group_desc(neg_in, neg_ood);
  RocCurve r;
  r.fpr.push_back(0);
  r.tpr.push_back(0);
  r.thresholds.push_back(-std::numeric_limits<double>::infinity());  // threshold on s: accept s <= -inf
  int64_t tp = 0, fp = 0;
  for (const auto& x : g) {
    tp += x.pos;
    fp += x.neg;
    r.tpr.push_back(double(tp) / double(s_in.size()));
    r.fpr.push_back(double(fp) / double(s_ood.size()));
    r.thresholds.push_back(-x.value);  // accept s <= this
  }
  return r;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) throw UsageError("percentile of an empty set");
  if (!(q >= 0 && q <= 100)) throw UsageError("percentile q must be in [0,100], got " + std::to_string(q));
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * double(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = pos - double(lo);
  return v[lo] + (v[hi] - v[lo]) * frac;
}

OodMetricsCI ood_metrics_ci(const std::vector<double>& s_in, const std::vector<double>& s_ood,
                            const BootstrapOptions& o) {
  check_scores(s_in, "in-distribution");
  check_scores(s_ood, "OOD");
  if (o.resamples() < 1) throw UsageError("bootstrap: resamples must be >= 1, got " + std::to_string(o.resamples()));
  if (!(o.level() > 0 && o.level() < 1)) throw UsageError("bootstrap: level must be in (0,1), got " + std::to_string(o.level()));
  std::mt19937_64 rng(o.seed());
  // Index draws by rejection-free modulo of 64-bit words: deterministic across
  // standard libraries (std::uniform_int_distribution is not).
  auto draw = [&](const std::vector<double>& src, std::vector<double>& dst) {
    dst.resize(src.size());
    for (auto& d : dst) d = src[rng() % src.size()];
  };
  std::vector<double> a, b, au, ai, ao, f9, de;
  for (int64_t r = 0; r < o.resamples(); ++r) {
    draw(s_in, a);
    draw(s_ood, b);
    const auto m = ood_metrics(a, b);
    au.push_back(m.auroc);
    ai.push_back(m.aupr_in);
    ao.push_back(m.aupr_out);
    f9.push_back(m.fpr95);
    de.push_back(m.detection_error);
  }
  const double lo = (1 - o.level()) / 2 * 100, hi = 100 - lo;
  OodMetricsCI ci;
  ci.resamples = o.resamples();
  ci.level = o.level();
  auto fill = [&](double* out, const std::vector<double>& v) {
    out[0] = percentile(v, lo);
    out[1] = percentile(v, hi);
  };
  fill(ci.auroc, au);
  fill(ci.aupr_in, ai);
  fill(ci.aupr_out, ao);
  fill(ci.fpr95, f9);
  fill(ci.detection_error, de);
  return ci;
}

nlohmann::json OodMetrics::to_json() const {
  return {{"auroc", auroc}, {"aupr_in", aupr_in}, {"aupr_out", aupr_out}, {"fpr95", fpr95},
          {"detection_error", detection_error}};
}

nlohmann::json OodMetricsCI::to_json() const {
  auto p = [](const double* v) { return nlohmann::json::array({v[0], v[1]}); };
  return {{"auroc", p(auroc)},   {"aupr_in", p(aupr_in)},
          {"aupr_out", p(aupr_out)}, {"fpr95", p(fpr95)},
          {"detection_error", p(detection_error)}, {"resamples", resamples}, {"level", level}};
}

std::vector<double> to_vector(const torch::Tensor& t) {
  TORCH_CHECK(t.defined() && t.dim() == 1, "scores must be a 1-D tensor, got ",
              t.defined() ? t.sizes() : c10::IntArrayRef{});
  auto c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double accuracy(const torch::Tensor& pred, const torch::Tensor& labels) {
  if (labels.dim() != 1 || labels.size(0) == 0)
    throw UsageError("accuracy: labels must be [N] with N > 0, got " + c10::str(labels.sizes()));
  const torch::Tensor cls = pred.dim() == 2 ? pred.argmax(1) : pred;
  if (cls.dim() != 1 || cls.size(0) != labels.size(0))
    throw UsageError("accuracy: predictions " + c10::str(pred.sizes()) + " do not match labels " +
                     c10::str(labels.sizes()));
  return cls.to(torch::kInt64).eq(labels.to(torch::kInt64)).to(torch::kFloat64).mean().item<double>();
}

}  // namespace ebm
