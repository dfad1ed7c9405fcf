// Graded shift (ebm/ood/shift.h, shift_eval.h) and Spearman's rho
// (ebm/metrics/spearman.h): every family is the identity at severity 0 and
// moves away from the clean image as the severity grows; Spearman against a
// brute-force rank count and SciPy; the flag-error agreement against
// scikit-learn (tests/fixtures/shift_flag_error.json, written by
// scripts/make_shift_fixtures.py); a planted score through the whole
// evaluation; score resolution and input checks.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <sys/stat.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/metrics/spearman.h"
#include "ebm/ood/ood.h"
#include "ebm/ood/shift.h"
#include "ebm/ood/shift_eval.h"
#include "scratch_dir.h"
#include "test_util.h"

using namespace ebm;
using json = nlohmann::json;

namespace {
using ebm::test::have_data_file;


// Random images with structure (a bright blob on a dark background), so that
// blur and rotation change them; deterministic.
torch::Tensor blobs(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto yy = torch::arange(28, torch::kFloat32).view({1, 1, 28, 1});
  auto xx = torch::arange(28, torch::kFloat32).view({1, 1, 1, 28});
  auto cy = torch::rand({n, 1, 1, 1}, gen) * 10 + 6, cx = torch::rand({n, 1, 1, 1}, gen) * 10 + 6;
  auto img = torch::exp(-((yy - cy).pow(2) / 18 + (xx - cx).pow(2) / 8));
  return (img + 0.3 * torch::rand({n, 1, 28, 28}, gen)).clamp(0, 1);
}

Shift with_partner(const std::string& spec, const torch::Tensor& partner) {
  Shift s = Shift::parse(spec);
  s.partner_images = partner;
  return s;
}

double mse(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).mean().item<double>(); }

std::string message(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no UsageError)";
}

json fixture() {
  return json::parse(read_file(std::string(EBM_SOURCE_DIR) + "/tests/fixtures/shift_flag_error.json"));
}

// E(x) = mean pixel value: higher = brighter = "more OOD" for the planted test.
class MeanEnergy : public Energy {
 public:
  torch::Tensor energy(const torch::Tensor& x) override { return x.flatten(1).mean(1); }
  std::string describe() const override { return "mean-pixel"; }
};

}  // namespace

// ---------------------------------------------------------------- families

TEST(ShiftFamilies, SeverityZeroIsTheIdentityBitForBit) {
  const auto x = blobs(16, 1);
  const auto partner = blobs(40, 2);
  for (const auto& f : shift_families()) {
    SCOPED_TRACE(f);
    const Shift s = with_partner(f == "mix" ? "mix:blobs" : f, partner);
    for (uint64_t seed : {0ull, 7ull}) {
      const auto y = s.apply(x, 0.0, seed);
      EXPECT_TRUE(torch::equal(y, x)) << "severity 0 changed the images";
      EXPECT_NE(y.data_ptr(), x.data_ptr()) << "a copy, not an alias of the input";
    }
    // ...and the lowest non-zero level does change them (else the check above proves nothing).
    const auto lv = s.levels(6);
    EXPECT_FALSE(torch::equal(s.apply(x, lv[1], 0), x)) << "severity " << lv[1] << " left the images unchanged";
    EXPECT_FALSE(torch::equal(s.apply(x, lv.back(), 0), x));
  }
}

TEST(ShiftFamilies, MseToTheCleanImageGrowsWithSeverity) {
  // Real images where there are any (rotation's MSE depends on the shapes), else blobs.
  std::vector<std::pair<std::string, torch::Tensor>> sets;
  DatasetOptions d;
  d.n = 300;
  if (have_data_file("fashion-mnist/t10k-images-idx3-ubyte.gz")) sets.emplace_back("fashion-mnist", load_dataset("fashion-mnist", d).images);
  if (have_data_file("mnist/images.idx")) sets.emplace_back("mnist", load_dataset("mnist", d).images);
  sets.emplace_back("blobs", blobs(300, 3));
  const auto partner = blobs(500, 4);
  for (const auto& [name, x] : sets) {
    for (const auto& f : shift_families()) {
      SCOPED_TRACE(name + " / " + f);
      const Shift s = with_partner(f == "mix" ? "mix:blobs" : f, partner);
      const auto lv = s.levels(6);
      double prev = -1;
      for (double sev : lv) {
        const double m = mse(s.apply(x, sev, 11), x);
        if (sev == 0) {
          EXPECT_EQ(m, 0.0);
        } else {
          EXPECT_GT(m, prev) << "MSE did not grow from the previous level to severity " << sev;
        }
        prev = m;
      }
    }
  }
}

TEST(ShiftFamilies, SeededAndInRange) {
  const auto x = blobs(32, 5);
  const auto partner = blobs(64, 6);
  for (const auto& f : shift_families()) {
    SCOPED_TRACE(f);
    const Shift s = with_partner(f == "mix" ? "mix:blobs" : f, partner);
    const double sev = s.levels(6)[3];
    const auto a = s.apply(x, sev, 3), b = s.apply(x, sev, 3);
    EXPECT_TRUE(torch::equal(a, b)) << "same seed, different images";
    EXPECT_EQ(a.sizes(), x.sizes());
    EXPECT_GE(a.min().item<float>(), 0.0f);
    EXPECT_LE(a.max().item<float>(), 1.0f);
    const bool random = f == "noise" || f == "rotate" || f == "occlude" || f == "mix";
    EXPECT_EQ(!torch::equal(a, s.apply(x, sev, 4)), random) << "a new seed should change exactly the seeded families";
  }
}

TEST(ShiftFamilies, OcclusionSquaresAreNestedAcrossSeverities) {
  const auto x = torch::zeros({8, 1, 28, 28});
  const Shift s = Shift::parse("occlude");
  torch::Tensor prev = s.apply(x, 0.0, 9).eq(0.5);
  for (double sev : s.levels(6)) {
    const auto cur = s.apply(x, sev, 9).eq(0.5);
    EXPECT_TRUE(torch::equal(cur.logical_and(prev), prev)) << "the square at " << sev << " lost pixels";
    EXPECT_EQ(cur[0].sum().item<int64_t>(), std::lround(sev) * std::lround(sev));
    prev = cur;
  }
}

TEST(ShiftFamilies, BadSpecsAndSeveritiesAreUsageErrorsNamingThem) {
  EXPECT_NE(message([] { Shift::parse("fog"); }).find("'fog'"), std::string::npos);
  EXPECT_NE(message([] { Shift::parse("mix"); }).find("mix:"), std::string::npos);
  EXPECT_NE(message([] { Shift::parse("noise:3"); }).find("noise:3"), std::string::npos);
  const Shift s = Shift::parse("rotate");
  EXPECT_NE(message([&] { s.apply(blobs(2, 0), 91, 0); }).find("91"), std::string::npos);
  EXPECT_NE(message([&] { s.apply(blobs(2, 0), -1, 0); }).find("-1"), std::string::npos);
  EXPECT_NE(message([&] { s.levels(1); }).find("1"), std::string::npos);
  EXPECT_NE(message([] { Shift::parse("mix:x").apply(blobs(2, 0), 0.5, 0); }).find("partner"), std::string::npos);
  EXPECT_NE(message([] { with_partner("mix:x", torch::rand({3, 1, 14, 14})).apply(blobs(2, 0), 0.5, 0); })
                .find("do not match"),
            std::string::npos);
  EXPECT_EQ(Shift::parse("mix:letters").partner, "letters");
  const auto lv = Shift::parse("quantize").levels(6);
  ASSERT_EQ(lv.size(), 6u);
  EXPECT_EQ(lv.front(), 0.0);
  EXPECT_EQ(lv.back(), 7.0);
}

// ---------------------------------------------------------------- Spearman

TEST(Spearman, APlantedScoreEqualToTheSeverityGivesOne) {
  const std::vector<double> sev = Shift::parse("noise").levels(6);
  EXPECT_EQ(spearman(sev, sev), 1.0);
  std::vector<double> up, down;
  for (double s : sev) {
    up.push_back(0.5 + 0.5 * std::tanh(3 * s));  // any strictly increasing transform
    down.push_back(-s);
  }
  EXPECT_EQ(spearman(sev, up), 1.0);
  EXPECT_EQ(spearman(sev, down), -1.0);
  EXPECT_TRUE(std::isnan(spearman(sev, std::vector<double>(6, 0.7)))) << "a flat curve has no rank order";
  EXPECT_THROW(spearman({1, 2}, {1, 2, 3}), UsageError);
  EXPECT_THROW(spearman({1}, {1}), UsageError);
  EXPECT_THROW(spearman({1, NAN}, {1, 2}), UsageError);
}

TEST(Spearman, MatchesABruteForceRankCount) {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 3 + int(rng() % 40);
    std::vector<double> a(n), b(n);
    // Few distinct values on one side: many ties.
    for (int i = 0; i < n; ++i) {
      a[i] = double(rng() % (trial % 2 ? 5 : 1000));
      b[i] = double(rng() % 7) + 0.25 * a[i];
    }
    // Brute force: rank = #{smaller} + (#{equal} + 1) / 2, then Pearson.
    auto ranks = [&](const std::vector<double>& v) {
      std::vector<double> r(n);
      for (int i = 0; i < n; ++i) {
        int lt = 0, eq = 0;
        for (int j = 0; j < n; ++j) lt += v[j] < v[i], eq += v[j] == v[i];
        r[i] = lt + (eq + 1) / 2.0;
      }
      return r;
    };
    const auto ra = ranks(a), rb = ranks(b);
    EXPECT_EQ(average_ranks(a), ra);
    double ma = 0, mb = 0;
    for (int i = 0; i < n; ++i) ma += ra[i] / n, mb += rb[i] / n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; ++i)
      sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma), sbb += (rb[i] - mb) * (rb[i] - mb);
    if (saa == 0 || sbb == 0) {
      EXPECT_TRUE(std::isnan(spearman(a, b)));
    } else {
      EXPECT_NEAR(spearman(a, b), sab / std::sqrt(saa * sbb), 1e-12) << "trial " << trial;
    }
  }
  // Without ties: 1 - 6 sum d^2 / (n (n^2 - 1)).
  const std::vector<double> a{3, 1, 4, 1.5, 9, 2.6}, b{2, 7, 1, 8, 2.8, 1.8};
  const auto ra = average_ranks(a), rb = average_ranks(b);
  double d2 = 0;
  for (size_t i = 0; i < a.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  EXPECT_NEAR(spearman(a, b), 1 - 6 * d2 / (6.0 * 35.0), 1e-12);
}

TEST(Spearman, AgreesWithScipy) {
  const json f = fixture();
  ASSERT_GE(f["spearman"].size(), 4u) << "run /usr/bin/python3 scripts/make_shift_fixtures.py";
  for (const auto& c : f["spearman"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    EXPECT_NEAR(spearman(c["a"].get<std::vector<double>>(), c["b"].get<std::vector<double>>()), c["rho"].get<double>(),
                1e-9);
  }
}

// ---------------------------------------------------------------- flag-error agreement

TEST(FlagError, AurocEqualsScikitLearnsOnTheFixture) {
  const json f = fixture();
  ASSERT_GE(f["cases"].size(), 7u) << "run /usr/bin/python3 scripts/make_shift_fixtures.py";
  for (const auto& c : f["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto s = c["scores"].get<std::vector<double>>();
    const auto ok = c["correct"].get<std::vector<int>>();
    const double want = c["flag_error_auroc"].get<double>();
    EXPECT_NEAR(flag_error_auroc(s, ok), want, 1e-9);
    // The tensor overload (as evaluate_shift calls it: float64 scores, int32 flags).
    const auto ts = torch::tensor(s, torch::kFloat64);
    const auto tc = torch::tensor(std::vector<int64_t>(ok.begin(), ok.end())).to(torch::kInt32);
    EXPECT_NEAR(flag_error_auroc(ts, tc), want, 1e-9);
  }
}

TEST(FlagError, OneClassIsNaNAndBadInputIsAUsageError) {
  EXPECT_TRUE(std::isnan(flag_error_auroc(std::vector<double>{0.1, 0.2}, std::vector<int>{1, 1})));
  EXPECT_TRUE(std::isnan(flag_error_auroc(std::vector<double>{0.1, 0.2}, std::vector<int>{0, 0})));
  EXPECT_THROW(flag_error_auroc(std::vector<double>{0.1}, std::vector<int>{1, 0}), UsageError);
  EXPECT_THROW(flag_error_auroc(std::vector<double>{}, std::vector<int>{}), UsageError);
  // Hand value: the one error outscores 2 of 3 correct images.
  EXPECT_NEAR(flag_error_auroc(std::vector<double>{0.1, 0.9, 0.5, 0.3}, std::vector<int>{1, 1, 0, 1}), 2.0 / 3.0,
              1e-15);
  EXPECT_EQ(severity_reaching({0, 1, 2, 3}, {0.5, 0.89, 0.9, 0.95}, 0.9), 2.0);
  EXPECT_TRUE(std::isnan(severity_reaching({0, 1}, {0.5, 0.6}, 0.9)));
}

// ---------------------------------------------------------------- evaluation

// Clean images are constants c_i ~ U(0, 0.9); mix:<ones> at alpha gives
// c_i + alpha (1 - c_i), and the planted score is the mean pixel. AUROC must
// rise strictly with alpha (Spearman exactly 1), read 0.5 at alpha 0, and the
// flagged share at a 95%-threshold must rise with it.
TEST(ShiftEval, APlantedScoreRisingWithSeverityGivesSpearmanOne) {
  const std::string dir = ebm::test::scratch_dir("ebm_shift_", "planted", true);
  auto gen = at::detail::createCPUGenerator(12);
  const int64_t N = 400;
  const auto c = torch::rand({N, 1, 1, 1}, gen) * 0.9;
  write_tensor(dir + "/clean.npy", c.expand({N, 1, 28, 28}).contiguous());
  write_tensor(dir + "/ones.npy", torch::ones({10, 1, 28, 28}));
  MeanEnergy e;
  // A detector calibrated on other constants from the same law.
  const Detector det = fit_detector((torch::rand({1000}, gen) * 0.9).to(torch::kFloat64), 95.0);
  ShiftModels m;
  m.model = &e;
  m.detector = &det;
  m.scores = resolve_shift_scores("energy", "", e, nullptr);
  const auto o = ShiftOptions().in(dir + "/clean.npy").shifts({"mix:" + dir + "/ones.npy"}).n(-1).progress(false);
  const ShiftReport r = evaluate_shift(m, o);
  ASSERT_EQ(r.shifts.size(), 1u);
  const auto& cv = r.shifts[0];
  ASSERT_EQ(cv.levels.size(), 6u);
  EXPECT_EQ(r.n, N);
  EXPECT_NEAR(cv.levels[0].metrics[0].auroc, 0.5, 1e-12) << "the clean set against itself";
  for (size_t i = 1; i < cv.levels.size(); ++i) {
    EXPECT_GT(cv.levels[i].metrics[0].auroc, cv.levels[i - 1].metrics[0].auroc) << "level " << i;
    EXPECT_GE(cv.levels[i].flagged, cv.levels[i - 1].flagged) << "level " << i;
  }
  EXPECT_EQ(cv.spearman[0], 1.0);
  std::vector<double> sev, au;
  for (const auto& l : cv.levels) sev.push_back(l.severity), au.push_back(l.metrics[0].auroc);
  EXPECT_EQ(cv.reaches_09[0], severity_reaching(sev, au, 0.9));
  EXPECT_NEAR(cv.levels[0].flagged, 0.05, 0.04) << "clean images at a 95% threshold";
  EXPECT_EQ(cv.levels.back().flagged, 1.0) << "alpha = 1: every image is all ones";
  // No classifier: no accuracy and no flag-error agreement, reported as null.
  EXPECT_TRUE(std::isnan(cv.levels[2].accuracy));
  EXPECT_TRUE(std::isnan(cv.flag_error[0]));
  const json j = r.to_json();
  EXPECT_TRUE(j["shifts"][0]["levels"][2]["accuracy"].is_null());
  EXPECT_EQ(j["shifts"][0]["levels"][5]["flagged"].get<double>(), 1.0);
  EXPECT_EQ(j["shifts"][0]["spearman_severity_auroc"].get<double>(), 1.0);
  for (const char* k : {"severity", "auroc", "fpr95", "accuracy", "flagged"})
    EXPECT_TRUE(j["shifts"][0]["levels"][0].contains(k)) << k;
}

TEST(ShiftEval, ScoresResolveOnTheClassifier) {
  NativeModel clf(json{{"type", "conv-classifier"}, {"width", 4}});
  MeanEnergy ebm_model;
  // The model is the classifier: one pass, plain labels, energy not repeated.
  auto s = resolve_shift_scores("energy", "all", clf, &clf);
  std::vector<std::string> labels;
  for (const auto& x : s) labels.push_back(x.label);
  EXPECT_EQ(labels, (std::vector<std::string>{"energy", "msp", "maxlogit", "odin", "mahalanobis", "knn", "vim", "react"}));
  // A separate classifier: its scores are labelled clf:, its energy kept beside the model's.
  s = resolve_shift_scores("energy", "msp,energy", ebm_model, &clf);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[1].label, "clf:msp");
  EXPECT_TRUE(s[1].on_classifier);
  EXPECT_EQ(s[2].label, "clf:energy");
  EXPECT_NE(message([&] { resolve_shift_scores("energy", "all", ebm_model, nullptr); }).find("--classifier"),
            std::string::npos);
  EXPECT_THROW(resolve_shift_scores("msp", "", ebm_model, nullptr), UsageError);
  EXPECT_THROW(resolve_shift_scores("energy", "bogus", clf, &clf), UsageError);
}

TEST(ShiftEval, ADetectorForAnotherScoreIsRefused) {
  MeanEnergy e;
  Detector det = fit_detector(torch::rand({20}, torch::kFloat64), 95.0);
  det.score = "grad-norm";
  ShiftModels m;
  m.model = &e;
  m.detector = &det;
  m.scores = resolve_shift_scores("energy", "", e, nullptr);
  EXPECT_NE(message([&] { evaluate_shift(m, ShiftOptions().progress(false)); }).find("grad-norm"), std::string::npos);
}
