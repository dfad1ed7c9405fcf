// Metrics module (ebm/metrics.h): every metric against scikit-learn 1.2 on the
// fixtures of scripts/make_metric_fixtures.py (tolerance 1e-9), plus hand
// values, invariances, bootstrap determinism and input checks.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/metrics/metrics.h"

using namespace ebm;
using json = nlohmann::json;

namespace {

constexpr double kTol = 1e-9;

std::vector<std::string> fixture_files() {
  const std::string dir = std::string(EBM_SOURCE_DIR) + "/tests/fixtures";
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind("metrics_", 0) == 0 && n.size() > 5 && n.substr(n.size() - 5) == ".json") out.push_back(dir + "/" + n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<double> vec(const json& j) { return j.get<std::vector<double>>(); }

void expect_vec_near(const std::vector<double>& a, const std::vector<double>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], kTol) << what << " [" << i << "]";
}

}  // namespace

TEST(MetricsFixtures, AgreeWithSklearn) {
  const auto files = fixture_files();
  ASSERT_GE(files.size(), 15u) << "run /usr/bin/python3 scripts/make_metric_fixtures.py";
  for (const auto& f : files) {
    SCOPED_TRACE(f);
    const json j = json::parse(read_file(f));
    const auto s_in = vec(j["in"]), s_ood = vec(j["ood"]);
    const auto m = ood_metrics(s_in, s_ood);
    EXPECT_NEAR(m.auroc, j["auroc"].get<double>(), kTol);
    EXPECT_NEAR(m.aupr_in, j["aupr_in"].get<double>(), kTol);
    EXPECT_NEAR(m.aupr_out, j["aupr_out"].get<double>(), kTol);
    EXPECT_NEAR(m.fpr95, j["fpr95"].get<double>(), kTol);
    EXPECT_NEAR(m.detection_error, j["detection_error"].get<double>(), kTol);
    EXPECT_EQ(m.n_in, (int64_t)s_in.size());
    EXPECT_EQ(m.n_ood, (int64_t)s_ood.size());

    // The generic functions on the pooled scores (y = 1 for OOD).
    std::vector<double> s(s_in);
    s.insert(s.end(), s_ood.begin(), s_ood.end());
    std::vector<int> y(s_in.size(), 0);
    y.insert(y.end(), s_ood.size(), 1);
    EXPECT_NEAR(roc_auc(s, y), j["auroc"].get<double>(), kTol);
    EXPECT_NEAR(average_precision(s, y), j["aupr_out"].get<double>(), kTol);
    std::vector<double> neg(s.size());
    std::vector<int> yin(y.size());
    for (size_t i = 0; i < s.size(); ++i) {
      neg[i] = -s[i];
      yin[i] = 1 - y[i];
    }
    EXPECT_NEAR(average_precision(neg, yin), j["aupr_in"].get<double>(), kTol);
    EXPECT_NEAR(fpr_at_tpr(s_in, s_ood, 0.95), j["fpr95"].get<double>(), kTol);

    // roc_curve == sklearn roc_curve(drop_intermediate=False), thresholds[0] = +inf.
    const auto r = roc_curve(s, y);
    expect_vec_near(r.fpr, vec(j["roc"]["fpr"]), "fpr");
    expect_vec_near(r.tpr, vec(j["roc"]["tpr"]), "tpr");
    ASSERT_FALSE(r.thresholds.empty());
    EXPECT_TRUE(std::isinf(r.thresholds[0]) && r.thresholds[0] > 0);
    expect_vec_near(std::vector<double>(r.thresholds.begin() + 1, r.thresholds.end()), vec(j["roc"]["thresholds"]),
                    "thresholds");
  }
}

TEST(Metrics, HandValuesAndFpr95ThresholdRule) {
  // Pairs (in, ood): (0,1) >, (0,2) >, (1,1) tie, (1,2) > -> (3 + 0.5) / 4.
  auto m = ood_metrics(std::vector<double>{0, 1}, std::vector<double>{1, 2});
  EXPECT_DOUBLE_EQ(m.auroc, 0.875);
  // Accepting s <= 1 accepts both in (tpr 1 >= .95) and the OOD 1: fpr95 = 1/2.
  EXPECT_DOUBLE_EQ(m.fpr95, 0.5);
  // Thresholds: accept s<=0 -> tpr .5, fpr 0 -> 0.25; accept s<=1 -> 0 + .25; min 0.25.
  EXPECT_DOUBLE_EQ(m.detection_error, 0.25);
  // AUPR-Out: OOD ranked by s desc: {2}: P=1,R=.5; {1,1}: P=2/3,R=1 -> .5 + .5*2/3.
  EXPECT_DOUBLE_EQ(m.aupr_out, 0.5 + 0.5 * 2.0 / 3.0);
  // AUPR-In: in ranked by -s: {0}: P=1,R=.5; {1,1}: P=2/3 -> same.
  EXPECT_DOUBLE_EQ(m.aupr_in, 0.5 + 0.5 * 2.0 / 3.0);

  // Perfect and constant detectors.
  m = ood_metrics(std::vector<double>{0, 0.1, 0.2}, std::vector<double>{5, 6});
  EXPECT_EQ(m.auroc, 1.0);
  EXPECT_EQ(m.fpr95, 0.0);
  EXPECT_EQ(m.detection_error, 0.0);
  EXPECT_EQ(m.aupr_in, 1.0);
  EXPECT_EQ(m.aupr_out, 1.0);
  m = ood_metrics(std::vector<double>(7, 3.0), std::vector<double>(3, 3.0));
  EXPECT_EQ(m.auroc, 0.5);
  EXPECT_EQ(m.fpr95, 1.0);
  EXPECT_EQ(m.detection_error, 0.5);
  EXPECT_NEAR(m.aupr_in, 0.7, 1e-15);  // the base rate of each class
  EXPECT_NEAR(m.aupr_out, 0.3, 1e-15);

  // 100 in-distribution scores 1..100: the threshold accepting 95% is 95.
  std::vector<double> in(100);
  for (int i = 0; i < 100; ++i) in[i] = i + 1;
  EXPECT_EQ(fpr_at_tpr(in, {95.0, 95.5, 96, 200}, 0.95), 0.25);  // only the tie at 95 is accepted
  EXPECT_EQ(fpr_at_tpr(in, {94.0, 95.0, 96, 200}, 0.95), 0.5);
  EXPECT_EQ(fpr_at_tpr(in, {0.0, 1.0}, 0.01), 1.0);               // threshold 1 accepts 1/100
  EXPECT_EQ(fpr_at_tpr(in, {0.5, 1.5}, 0.01), 0.5);
  EXPECT_EQ(fpr_at_tpr(in, {100.0, 101.0}, 1.0), 0.5);
  EXPECT_THROW(fpr_at_tpr(in, {1.0}, 0.0), UsageError);
  // The ROC it reads: from "accept nothing" to "accept all", thresholds increasing.
  const auto r = ood_roc_curve({1, 2}, {2, 3});
  EXPECT_EQ(r.tpr, (std::vector<double>{0, 0.5, 1, 1}));
  EXPECT_EQ(r.fpr, (std::vector<double>{0, 0, 0.5, 1}));
  EXPECT_EQ(r.thresholds[1], 1.0);
  EXPECT_EQ(r.thresholds[3], 3.0);
}

TEST(Metrics, Invariances) {
  auto g = at::detail::createCPUGenerator(3);
  const auto a = to_vector(torch::randn({300}, g)), b = to_vector(torch::randn({200}, g) + 0.7);
  const auto m = ood_metrics(a, b);
  // Swapping the roles mirrors AUROC and swaps AUPR-In/Out.
  const auto sw = ood_metrics(b, a);
  EXPECT_NEAR(m.auroc + sw.auroc, 1.0, 1e-12);
  // Strictly increasing transforms change nothing.
  std::vector<double> ta(a), tb(b);
  for (auto& v : ta) v = std::exp(v) * 3 + 1;
  for (auto& v : tb) v = std::exp(v) * 3 + 1;
  const auto mt = ood_metrics(ta, tb);
  EXPECT_NEAR(mt.auroc, m.auroc, 1e-15);
  EXPECT_NEAR(mt.aupr_in, m.aupr_in, 1e-15);
  EXPECT_NEAR(mt.aupr_out, m.aupr_out, 1e-15);
  EXPECT_EQ(mt.fpr95, m.fpr95);
  EXPECT_EQ(mt.detection_error, m.detection_error);
  // Order of the inputs does not matter.
  std::vector<double> ra(a.rbegin(), a.rend());
  EXPECT_EQ(ood_metrics(ra, b).aupr_in, m.aupr_in);
  // Tensor overload = vector overload.
  const auto mtensor = ood_metrics(torch::tensor(a), torch::tensor(b));
  EXPECT_EQ(mtensor.auroc, m.auroc);
  // AUROC = Mann-Whitney U / (n_in * n_ood), counted pair by pair.
  double u = 0;
  for (double x : a)
    for (double y : b) u += y > x ? 1.0 : (y == x ? 0.5 : 0.0);
  EXPECT_NEAR(m.auroc, u / (a.size() * b.size()), 1e-12);
}

TEST(Metrics, BootstrapIsSeededAndBracketsTheEstimate) {
  auto g = at::detail::createCPUGenerator(5);
  const auto a = to_vector(torch::randn({400}, g)), b = to_vector(torch::randn({300}, g) + 1.0);
  const auto m = ood_metrics(a, b);
  const auto o = BootstrapOptions().resamples(300).seed(7);
  const auto c1 = ood_metrics_ci(a, b, o), c2 = ood_metrics_ci(a, b, o);
  EXPECT_EQ(c1.auroc[0], c2.auroc[0]);
  EXPECT_EQ(c1.fpr95[1], c2.fpr95[1]);
  const auto c3 = ood_metrics_ci(a, b, BootstrapOptions().resamples(300).seed(8));
  EXPECT_NE(c1.auroc[0], c3.auroc[0]);
  EXPECT_LT(c1.auroc[0], m.auroc);
  EXPECT_GT(c1.auroc[1], m.auroc);
  EXPECT_LE(c1.fpr95[0], m.fpr95);
  EXPECT_GE(c1.fpr95[1], m.fpr95);
  // The interval width matches the AUROC standard error roughly (Hanley-McNeil ~ 0.017 here).
  EXPECT_GT(c1.auroc[1] - c1.auroc[0], 0.03);
  EXPECT_LT(c1.auroc[1] - c1.auroc[0], 0.12);
  const auto j = c1.to_json();
  EXPECT_EQ(j["auroc"].size(), 2u);
  EXPECT_EQ(j["resamples"], 300);
  // Constant scores: every resample gives AUROC 0.5.
  const auto cc = ood_metrics_ci(std::vector<double>(20, 1.0), std::vector<double>(10, 1.0), o);
  EXPECT_EQ(cc.auroc[0], 0.5);
  EXPECT_EQ(cc.auroc[1], 0.5);
}

TEST(Metrics, PercentileMatchesNumpyAndBadInputsAreUsageErrors) {
  // numpy.percentile([1,2,3,4], q) for q = 0, 25, 50, 97.5, 100
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 25), 1.75);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 97.5), 3.925);
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 100), 4.0);
  EXPECT_DOUBLE_EQ(percentile({7}, 30), 7.0);

  EXPECT_THROW(ood_metrics(std::vector<double>{}, std::vector<double>{1}), UsageError);
  EXPECT_THROW(ood_metrics(std::vector<double>{1}, std::vector<double>{}), UsageError);
  EXPECT_THROW(ood_metrics(std::vector<double>{1, std::nan("")}, std::vector<double>{1}), UsageError);
  EXPECT_THROW(ood_metrics(std::vector<double>{1}, std::vector<double>{std::numeric_limits<double>::infinity()}),
               UsageError);
  EXPECT_THROW(roc_auc({1, 2}, {1, 1}), UsageError);     // one class only
  EXPECT_THROW(roc_auc({1, 2}, {0, 2}), UsageError);     // label not 0/1
  EXPECT_THROW(roc_curve({1, 2}, {0}), UsageError);      // size mismatch
  EXPECT_THROW(percentile({}, 50), UsageError);
  EXPECT_THROW(ood_metrics_ci({1.0}, {2.0}, BootstrapOptions().resamples(0)), UsageError);
  try {
    ood_metrics(std::vector<double>{0.5, std::nan("")}, std::vector<double>{1});
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("#1"), std::string::npos) << e.what();
  }
}
