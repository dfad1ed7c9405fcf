// test_quality.cpp: the quality measurements of generated images (quality.h)
// and their wiring into `ebm compose eval` (evaluate_composition) and `ebm
// sample --judge` (sample()): which real images an expression is compared
// with, the Fréchet distance against its real-vs-real reference, and kNN
// agreement. On the shipped judge and MNIST; skipped when either is absent.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ebm/compose/composer.h"
#include "ebm/compose/morphology.h"
#include "ebm/compose/quality.h"
#include "ebm/core/common.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/metrics/frechet.h"
#include "ebm/train/sample.h"
#include "test_util.h"

namespace ebm {
namespace {
using ebm::test::kRoot;


bool have_mnist_and_models() {
  return std::filesystem::exists(data_dir() + "/mnist/images.idx") &&
         std::filesystem::exists(kRoot + "/models/mnist-judge/card.json") &&
         std::filesystem::exists(kRoot + "/models/mnist-attr-thickness/card.json");
}
#define REQUIRE_MNIST_AND_MODELS()                                                                \
  if (!have_mnist_and_models())                                                                   \
  GTEST_SKIP() << "mnist data or shipped models absent (set EBM_DATA or run scripts/setup)"

Dataset mnist(const std::string& split) {
  DatasetOptions d;
  d.split = split;
  return load_dataset("mnist", d);
}

AttributeSet shipped_attributes() {
  return AttributeSet({kRoot + "/models/mnist-attr-digit", kRoot + "/models/mnist-attr-thickness"});
}

std::pair<double, double> shipped_terciles() {
  const auto b = load_card(kRoot + "/models/mnist-attr-thickness").at("attribute").at("tercile_boundaries");
  return {b.at(0).get<double>(), b.at(1).get<double>()};
}

// ---------------------------------------------------------------- which real images

TEST(QualityAttributes, FixedByPositiveTopLevelConjunctsOnly) {
  REQUIRE_MNIST_AND_MODELS();
  const AttributeSet attrs = shipped_attributes();
  auto fixed = [&](const std::string& e) { return fixed_attributes(parse_expr(e), attrs); };
  EXPECT_EQ(fixed("digit=3 & thin").str(), "digit=3 & thickness=thin");
  EXPECT_EQ(fixed("digit=3 & thin").label, 3);
  EXPECT_EQ(fixed("digit=3 & thin").thickness, 0);
  EXPECT_EQ(fixed("thickness=thick & digit=7").str(), "digit=7 & thickness=thick");
  EXPECT_EQ(fixed("digit=0").str(), "digit=0");
  EXPECT_EQ(fixed("medium").str(), "thickness=medium");
  EXPECT_EQ(fixed("2*digit=5 & 0.5*(thick)").str(), "digit=5 & thickness=thick");
  EXPECT_EQ(fixed("digit=7 & !thick").str(), "digit=7");        // NOT fixes nothing
  EXPECT_EQ(fixed("digit=3 | digit=8").str(), "any");           // OR fixes nothing
  EXPECT_EQ(fixed("(digit=3 | digit=8) & thin").str(), "thickness=thin");
  EXPECT_TRUE(fixed("digit=3 & digit=5").contradictory);
  EXPECT_FALSE(fixed("digit=3 & digit=3").contradictory);
}

// ---------------------------------------------------------------- Fréchet ratio

// Draws per check; EBM_QUALITY_DRAWS raises it to re-measure the spreads the
// tolerances below were set from (each check prints min / median / max).
int64_t draws(int64_t d) {
  const char* s = std::getenv("EBM_QUALITY_DRAWS");
  return s && *s ? std::max<int64_t>(d, std::atoll(s)) : d;
}

struct Spread {
  double min, median, max;
};
Spread spread(std::vector<double> v, const std::string& what) {
  std::sort(v.begin(), v.end());
  const Spread s{v.front(), v[v.size() / 2], v.back()};
  std::printf("%-44s draws %3zu  min %.3f  median %.3f  max %.3f\n", what.c_str(), v.size(), s.min, s.median, s.max);
  return s;
}

// Real test images fed as samples. The first n images (in a seeded random
// order) of those with `truth` are the "samples"; the rest are the only pool
// the judge may draw its real sets from, and it is asked for `claimed`
// attributes. With truth == claimed the samples and the real sets A_r, B_r
// are exchangeable draws, so FD(S, A) and FD(B, A) have the same expectation.
QualityReport real_as_samples(const Dataset& test, const torch::Tensor& thick_class, const RealAttributes& truth,
                              const RealAttributes& claimed, int64_t n, uint64_t draw, const EnergyPtr& judge,
                              const std::pair<double, double>& terciles, const torch::Tensor& samples = {}) {
  auto keep = torch::ones({test.size()}, torch::kBool);
  if (truth.label >= 0) keep = keep.logical_and(test.labels.eq(truth.label));
  if (truth.thickness >= 0) keep = keep.logical_and(thick_class.eq(truth.thickness));
  const auto idx = keep.nonzero().flatten();
  auto gen = at::detail::createCPUGenerator(1000 + draw);
  const auto perm = idx.index_select(0, torch::randperm(idx.size(0), gen, torch::kInt64));
  const auto s = perm.narrow(0, 0, n);
  const auto rest = torch::ones({test.size()}, torch::kBool).index_fill_(0, s, false).nonzero().flatten();
  const QualityJudge q(judge, "models/mnist-judge", "mnist", QualityOptions().knn(false),
                       {RealPool{"test-rest", test.images.index_select(0, rest), test.labels.index_select(0, rest)}},
                       terciles);
  const auto r = q.measure(samples.defined() ? samples : test.images.index_select(0, s), claimed, draw);
  EXPECT_TRUE(r.frechet_ratio.has_value()) << r.to_json().dump();
  EXPECT_EQ(r.frechet_real.value("n", int64_t{0}), n) << r.to_json().dump();
  EXPECT_EQ(r.frechet_real.value("split", ""), "test-rest") << r.to_json().dump();
  EXPECT_EQ(r.frechet_real.value("draws", int64_t{0}), QualityOptions().draws());
  return r;
}

struct MnistFixture {
  Dataset test = mnist("test");
  EnergyPtr judge = load_model(kRoot + "/models/mnist-judge");
  std::pair<double, double> terciles = shipped_terciles();
  torch::Tensor thick = thickness_class(stroke_thickness(test.images), terciles.first, terciles.second);
};

RealAttributes attrs(int64_t label, int64_t thickness = -1) {
  RealAttributes a;
  a.label = label, a.thickness = thickness;
  return a;
}

// Tolerances from 40 draws of each case (EBM_QUALITY_DRAWS=40; the ratio
// averages the shipped 10 reference pairs):
//   real digit=3 as samples, n = 60 (of ~200 test 3s)   min 0.63  median 0.96  max 1.98
//   real thickness=thick as samples, n = 100 (~650)      min 0.67  median 0.97  max 2.18
//   real images of any digit as samples, n = 100 (2,000) min 0.60  median 0.89  max 1.85
// A single ratio of real samples thus ranges over about [0.6, 2.2]: the
// reference pairs are averaged, but the n samples are one draw, and the
// judge's features are dominated by a few directions (the top eigenvalue of
// the covariance is over half its trace), so the mean term |mu_S - mu_A|^2 is
// a chi-square of few degrees of freedom; the ratio is right-skewed, so its
// median sits a little below 1. Checked: the median of 6 draws in
// [0.75, 1.35] and every draw in [0.4, 3.0]. A wrong pairing (the wrong class,
// a reference at another n, the same set twice) moves these far more (next test).
TEST(QualityMnist, RealImagesAsSamplesGiveARatioNearOne) {
  REQUIRE_MNIST_AND_MODELS();
  const MnistFixture f;
  struct Case {
    RealAttributes a;
    int64_t n;
  };
  for (const Case& c : {Case{attrs(3), 60}, Case{attrs(-1, 2), 100}, Case{attrs(-1), 100}}) {
    std::vector<double> r;
    for (int64_t d = 0; d < draws(6); ++d)
      r.push_back(*real_as_samples(f.test, f.thick, c.a, c.a, c.n, uint64_t(d), f.judge, f.terciles).frechet_ratio);
    const Spread s = spread(r, "real " + c.a.str() + " as samples, n " + std::to_string(c.n));
    EXPECT_GE(s.median, 0.75) << c.a.str();
    EXPECT_LE(s.median, 1.35) << c.a.str();
    EXPECT_GE(s.min, 0.4) << c.a.str();
    EXPECT_LE(s.max, 3.0) << c.a.str();
  }
}

// The same harness with samples that are not real images of the claimed
// attributes. Their ratios over 40 draws, against the real-samples range
// [0.6, 2.2] above:
//   uniform noise as digit=3, n = 60      min 1246   median 1607   max 2183
//   real 3s as digit=5, n = 60            min 8.86   median 11.65  max 14.94
//   real thin digits as thick, n = 100    min 1.85   median 3.06   max 4.04
// Thin and thick digits overlap in the judge's features (it was trained to
// ignore thickness), so one thin-as-thick draw can fall inside the real range;
// its median of 5 draws is checked against 2.0, above every real median.
TEST(QualityMnist, NoiseAndWrongAttributesGiveLargeRatios) {
  REQUIRE_MNIST_AND_MODELS();
  const MnistFixture f;
  std::vector<double> noise, wrong_digit, wrong_thickness;
  for (int64_t d = 0; d < draws(5); ++d) {
    auto gen = at::detail::createCPUGenerator(2000 + uint64_t(d));
    const auto u = torch::rand({60, 1, 28, 28}, gen);
    noise.push_back(*real_as_samples(f.test, f.thick, attrs(3), attrs(3), 60, uint64_t(d), f.judge, f.terciles, u).frechet_ratio);
    // Real 3s, removed from the pool as above, claimed to be 5s.
    wrong_digit.push_back(*real_as_samples(f.test, f.thick, attrs(3), attrs(5), 60, uint64_t(d), f.judge, f.terciles).frechet_ratio);
    wrong_thickness.push_back(
        *real_as_samples(f.test, f.thick, attrs(-1, 0), attrs(-1, 2), 100, uint64_t(d), f.judge, f.terciles).frechet_ratio);
  }
  EXPECT_GE(spread(noise, "uniform noise as digit=3, n 60").min, 100.0);
  EXPECT_GE(spread(wrong_digit, "real 3s as digit=5, n 60").min, 5.0);
  EXPECT_GE(spread(wrong_thickness, "real thin as thickness=thick, n 100").median, 2.0);
}

// --frechet-split: a tuning run's real sets come from the split it names, and
// the test split is never loaded; an unknown split is refused.
TEST(QualityMnist, RealSplitKeepsTuningOffTheTestImages) {
  REQUIRE_MNIST_AND_MODELS();
  const MnistFixture f;
  const auto threes = f.test.images.index({f.test.labels.eq(3)}).narrow(0, 0, 20);
  const QualityJudge fit(f.judge, "models/mnist-judge", "mnist", QualityOptions().real_split("fit").knn(false));
  const auto r = fit.measure(threes, attrs(3), 0);
  EXPECT_EQ(r.frechet_real["split"], "fit") << r.frechet_real.dump();
  EXPECT_FALSE(r.frechet_real["pools"].contains("test")) << r.frechet_real.dump();
  EXPECT_TRUE(r.frechet_ratio.has_value());
  const QualityJudge val(f.judge, "models/mnist-judge", "mnist",
                         QualityOptions().real_split("val").fallback_split("val").knn(false));
  const auto v = val.measure(threes, attrs(3), 0);
  EXPECT_EQ(v.frechet_real["split"], "val") << v.frechet_real.dump();
  EXPECT_EQ(v.frechet_real["pools"].size(), 1u) << v.frechet_real.dump();
  EXPECT_THROW(QualityJudge(f.judge, "models/mnist-judge", "mnist", QualityOptions().real_split("tst")), UsageError);
}

// ---------------------------------------------------------------- kNN agreement

// The shipped wiring (dataset "mnist": the kNN judge is fitted on mnist/fit)
// reading real test digits: labelled correctly, agreement is its test
// accuracy (0.9615 overall, results/judge/mnist-knn.json); with the labels
// shuffled, a group of "intended digit d" is a mix of all digits and the
// agreement is about 1/10.
TEST(QualityMnist, KnnAgreementOfRealDigitsLabelledCorrectlyOrShuffled) {
  REQUIRE_MNIST_AND_MODELS();
  const MnistFixture f;
  const QualityJudge q(f.judge, "models/mnist-judge", "mnist", QualityOptions().frechet(false));
  auto gen = at::detail::createCPUGenerator(7);
  const auto shuffled = f.test.labels.index_select(0, torch::randperm(f.test.size(), gen, torch::kInt64));
  double right = 0, wrong = 0;
  for (int64_t d = 0; d < 10; ++d) {
    const auto r = q.measure(f.test.images.index({f.test.labels.eq(d)}), attrs(d), 0);
    ASSERT_TRUE(r.knn_agreement.has_value()) << r.to_json().dump();
    EXPECT_TRUE(r.frechet_real.is_null());  // --no-frechet
    EXPECT_EQ(r.knn_judge["data"], "mnist/fit");
    EXPECT_EQ(r.knn_judge["digit"], d);
    EXPECT_GE(*r.knn_agreement, 0.85) << "digit " << d;
    right += *r.knn_agreement / 10;
    const auto s = q.measure(f.test.images.index({shuffled.eq(d)}), attrs(d), 0);
    EXPECT_LE(*s.knn_agreement, 0.25) << "shuffled, digit " << d;
    wrong += *s.knn_agreement / 10;
  }
  std::printf("kNN agreement: labelled %.3f, shuffled %.3f (mean over digits)\n", right, wrong);
  EXPECT_GE(right, 0.9);
  EXPECT_LE(wrong, 0.15);
  // No digit fixed, or not MNIST: no kNN figure.
  EXPECT_FALSE(q.measure(f.test.images.narrow(0, 0, 8), attrs(-1, 0), 0).knn_agreement.has_value());
  const QualityJudge fashion(f.judge, "models/mnist-judge", "fashion-mnist", QualityOptions().frechet(false));
  EXPECT_FALSE(fashion.measure(f.test.images.narrow(0, 0, 8), attrs(3), 0).knn_agreement.has_value());
}

// ---------------------------------------------------------------- wiring

TEST(QualityWiring, ComposeEvalReportsQualityPerExpression) {
  REQUIRE_MNIST_AND_MODELS();
  const MnistFixture f;
  ComposerOptions co;
  co.attr_models({kRoot + "/models/mnist-attr-digit", kRoot + "/models/mnist-attr-thickness"});
  co.prior(kRoot + "/models/mnist-dsm");
  co.sample().restarts(1).langevin().steps(1);
  const Composer c(co);
  ComposeEvalOptions eo;
  eo.judge(kRoot + "/models/mnist-judge");
  // n = 40: 2n = 80 > the test split's thin 3s, so the real sets come from fit.
  eo.n(40);
  const auto rep = evaluate_composition(c, {"digit=3 & thin", "digit=3 | digit=8", "digit=3 & digit=5"}, eo, 11);
  ASSERT_EQ(rep.rows.size(), 3u);
  ASSERT_EQ(rep.quality.size(), 3u);
  const auto& and_row = rep.rows[0];
  const int64_t test_thin_3s = f.test.labels.eq(3).logical_and(f.thick.eq(0)).sum().item<int64_t>();
  ASSERT_LT(test_thin_3s, 80) << "the fallback check needs fewer than 2n thin 3s in test";
  EXPECT_EQ(and_row["frechet_real"]["attributes"], "digit=3 & thickness=thin");
  EXPECT_EQ(and_row["frechet_real"]["pools"]["test"], test_thin_3s);
  EXPECT_EQ(and_row["frechet_real"]["split"], "fit");
  EXPECT_EQ(and_row["frechet_real"]["n"], 40);
  EXPECT_NE(and_row["frechet_real"]["note"].get<std::string>().find("fewer than 2n = 80"), std::string::npos);
  EXPECT_GT(and_row["frechet_reference"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(and_row["frechet_ratio"].get<double>(),
                   and_row["frechet"].get<double>() / and_row["frechet_reference"].get<double>());
  EXPECT_EQ(and_row["knn_judge"]["digit"], 3);
  EXPECT_EQ(and_row["knn_judge"]["n"], 40);
  const double ratio = and_row["frechet_ratio"].get<double>();
  EXPECT_TRUE(std::isfinite(ratio) && ratio > 0);
  // The existing fields stay.
  for (const char* k : {"success_rate", "per_term", "diversity", "digit_histogram", "mean_energy"})
    EXPECT_TRUE(and_row.contains(k)) << k;
  // OR fixes nothing: all test images, no kNN figure.
  EXPECT_EQ(rep.rows[1]["frechet_real"]["attributes"], "any");
  EXPECT_EQ(rep.rows[1]["frechet_real"]["split"], "test");
  EXPECT_EQ(rep.rows[1]["frechet_real"]["pool"], f.test.size());
  EXPECT_FALSE(rep.rows[1].contains("knn_agreement"));
  // A contradiction: figures null, and the note says why.
  EXPECT_TRUE(rep.rows[2]["frechet"].is_null());
  EXPECT_NE(rep.rows[2]["frechet_real"]["note"].get<std::string>().find("two values"), std::string::npos);
  EXPECT_NE(rep.to_text().find("FD "), std::string::npos) << rep.to_text();
  // frechet_n larger than n is refused before any sampling, naming both.
  try {
    evaluate_composition(c, {"digit=3"}, ComposeEvalOptions(eo).quality(QualityOptions().frechet_n(41)), 0);
    ADD_FAILURE() << "frechet_n 41 > n 40 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("41"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("40"), std::string::npos) << e.what();
  }
}

TEST(QualityWiring, SampleReportsQualityWithAJudge) {
  REQUIRE_MNIST_AND_MODELS();
  SampleOptions o;
  o.n(12).cls(7).langevin().steps(1);
  const auto r = sample(kRoot + "/models/mnist-clf", o, {}, kRoot + "/models/mnist-judge");
  const auto j = r.to_json();
  EXPECT_EQ(j["frechet_real"]["attributes"], "digit=7");
  EXPECT_EQ(j["frechet_real"]["data"], "mnist");
  EXPECT_EQ(j["frechet_real"]["split"], "test");
  EXPECT_EQ(j["frechet_real"]["n"], 12);
  EXPECT_GT(j["frechet_reference"].get<double>(), 0.0);
  EXPECT_EQ(j["knn_judge"]["digit"], 7);
  EXPECT_TRUE(j.contains("judged_samples"));
  EXPECT_NE(r.to_text().find("kNN agreement"), std::string::npos) << r.to_text();
  // Unconditional: all test images, no kNN figure; off with frechet(false).
  o.cls(-1);
  const auto u = sample(kRoot + "/models/mnist-clf", o, {}, kRoot + "/models/mnist-judge").to_json();
  EXPECT_EQ(u["frechet_real"]["attributes"], "any");
  EXPECT_FALSE(u.contains("knn_agreement"));
  o.quality().frechet(false);
  EXPECT_FALSE(sample(kRoot + "/models/mnist-clf", o, {}, kRoot + "/models/mnist-judge").to_json().contains("frechet"));
  // No judge: no quality figures at all.
  EXPECT_FALSE(sample(kRoot + "/models/mnist-clf", SampleOptions(o).quality(QualityOptions())).to_json().contains("frechet"));
}

}  // namespace
}  // namespace ebm
