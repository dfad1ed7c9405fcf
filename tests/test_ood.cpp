// OOD detection (ebm/ood.h): score values and sign convention, calibration
// rates (binomial tolerances), detector JSON round trip and refusal of a
// mismatched model, and a small end-to-end evaluation (library and CLI).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "scratch_dir.h"
#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"
#include "ebm/ood/ood.h"
#include "ebm/train/train.h"
#include "test_util.h"

using namespace ebm;

namespace {
using ebm::test::have_mnist;


bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string tmpdir(const std::string& name) { return ebm::test::scratch_dir("ebm_ood_", name, true); }

// A 3-class "classifier" with logits_k = w_k * mean(x) + b_k: every score has
// a closed form.
class LinearLogits : public Energy {
 public:
  torch::Tensor w = torch::tensor({2.0f, -1.0f, 0.5f}), b = torch::tensor({0.0f, 0.3f, -0.2f});
  torch::Tensor logits(const torch::Tensor& x) override { return x.flatten(1).mean(1, true) * w + b; }
  torch::Tensor energy(const torch::Tensor& x) override { return free_energy(logits(x)); }
  int64_t num_classes() const override { return 3; }
  std::string describe() const override { return "linear-logits"; }
};

class NanInRowOneEnergy : public Energy {
 public:
  torch::Tensor energy(const torch::Tensor& x) override {
    auto e = x.flatten(1).sum(1);
    e[1] = std::nan("");
    return e;
  }
  std::string describe() const override { return "nan"; }
};

// A random-weight classifier saved as a native model (deterministic by seed).
std::string save_random_classifier(const std::string& dir, uint64_t seed) {
  torch::manual_seed(seed);
  NativeModel m(json{{"type", "conv-classifier"}, {"width", 4}});
  m.set_card({{"task", "clf"}});
  save_model(dir, m);
  return dir;
}

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

// ---------------------------------------------------------------- scores

namespace {

void classifier_scores_have_closed_forms() {
  LinearLogits e;
  auto g = at::detail::createCPUGenerator(1);
  const auto x = torch::rand({7, 1, 5, 5}, g);
  const auto L = e.logits(x).to(torch::kFloat64);
  // Every score but "combined" (it needs fitted statistics; tested on its own below)
  // and the post-hoc detectors (test_posthoc.cpp).
  std::vector<std::string> names;
  for (const auto& n : score_names())
    if (n != "combined" && !is_posthoc(n)) names.push_back(n);
  const auto s = compute_scores(e, x, names, ScoreOptions().temperature(2.0).batch(3));
  EXPECT_TRUE(torch::allclose(s.at("energy"), -2.0 * torch::logsumexp(L / 2.0, 1), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(s.at("msp"), -std::get<0>(torch::softmax(L, 1).max(1)), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(s.at("maxlogit"), -std::get<0>(L.max(1)), 1e-6, 1e-6));
  // grad_x of -T*logsumexp(L/T) = -(sum_k p_k w_k) / D per pixel (p = softmax(L/T)).
  const auto p = torch::softmax(L / 2.0, 1);
  const auto gn = (p * e.w.to(torch::kFloat64)).sum(1).abs() / std::sqrt(25.0);
  EXPECT_TRUE(torch::allclose(s.at("grad-norm"), gn, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(s.predictions, L.argmax(1)));
  for (const auto& [name, t] : s.scores) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat64) << name;
    EXPECT_EQ(t.size(0), 7) << name;
  }
  // Batch size changes nothing.
  const auto s1 = compute_scores(e, x, {"energy", "msp"}, ScoreOptions().temperature(2.0).batch(1000));
  EXPECT_TRUE(torch::allclose(s1.at("energy"), s.at("energy"), 0, 1e-12));
  EXPECT_TRUE(torch::allclose(s1.at("msp"), s.at("msp"), 0, 1e-12));
  // T = 1 is the plain free energy, i.e. the model's own energy.
  EXPECT_TRUE(torch::allclose(ood_score(e, x, "energy"), e.energy(x).to(torch::kFloat64), 1e-6, 1e-6));
  // A classifier without a linear head on exposed features: every score but the feature-based detectors.
  EXPECT_EQ(parse_scores("all", e), (std::vector<std::string>{"energy", "msp", "maxlogit", "grad-norm",
                                                               "energy-complexity", "combined", "odin"}));
  EXPECT_THROW(check_score("mahalanobis", e), UsageError);
  EXPECT_THROW(compute_scores(e, x, {"knn"}), UsageError);
  // DESIGN.md's "free-energy" is the classifier's energy.
  EXPECT_EQ(parse_scores("free-energy,msp", e), (std::vector<std::string>{"energy", "msp"}));
  EXPECT_TRUE(torch::equal(ood_score(e, x, "free-energy"), ood_score(e, x, "energy")));
}

// Energy models (no logits): energy and grad-norm only.
void energy_model_scores_and_errors() {
  const auto mu = torch::full({1, 4, 4}, 0.3f);
  GaussianEnergy e(mu, 0.5);
  auto g = at::detail::createCPUGenerator(2);
  const auto x = torch::rand({9, 1, 4, 4}, g);
  const auto s = compute_scores(e, x, {"energy", "grad-norm"});
  EXPECT_TRUE(torch::allclose(s.at("energy"), e.energy(x).to(torch::kFloat64), 1e-6, 1e-6));
  const auto gn = (x - mu).flatten(1).norm(2, 1).to(torch::kFloat64) / 0.25;  // ||x - mu|| / sigma^2
  EXPECT_TRUE(torch::allclose(s.at("grad-norm"), gn, 1e-5, 1e-5));
  EXPECT_FALSE(s.predictions.defined());
  EXPECT_THROW(ood_score(e, x, "msp"), UsageError);
  EXPECT_THROW(ood_score(e, x, "maxlogit"), UsageError);
  EXPECT_THROW(ood_score(e, x, "likelihood"), UsageError);
  EXPECT_THROW(ood_score(e, x, "energy", ScoreOptions().temperature(0)), UsageError);
  EXPECT_EQ(parse_scores("all", e), (std::vector<std::string>{"energy", "grad-norm", "energy-complexity", "combined"}));
  // energy-complexity = energy - PNG length in nats; a constant image compresses
  // better than noise, so its complexity is smaller.
  const auto ec = compute_scores(e, x, {"energy", "energy-complexity"});
  EXPECT_TRUE(torch::allclose(ec.at("energy-complexity"), ec.at("energy") - png_complexity_nats(x), 0, 1e-9));
  const auto flat = torch::full({1, 1, 28, 28}, 0.5f), noise = torch::rand({1, 1, 28, 28}, g);
  EXPECT_LT(png_complexity_nats(flat)[0].item<double>(), png_complexity_nats(noise)[0].item<double>());
  EXPECT_NEAR(png_complexity_nats(flat)[0].item<double>(),
              double(encode_png(torch::full({28, 28}, 128, torch::kUInt8)).size()) * 8 * std::log(2.0), 1e-9);
  EXPECT_EQ(parse_scores("grad-norm,energy,energy", e), (std::vector<std::string>{"grad-norm", "energy"}));
  EXPECT_THROW(parse_scores("energy,msp", e), UsageError);
  EXPECT_THROW(parse_scores("free-energy", e), UsageError);
  NanInRowOneEnergy n;
  EXPECT_THROW(ood_score(n, x, "energy"), DivergenceError);
}

}  // namespace

// (One test process for both: each ctest case pays ~0.5 s of LibTorch start-up.)
TEST(OodScores, ClosedFormsOfEveryScoreAndErrors) {
  classifier_scores_have_closed_forms();
  energy_model_scores_and_errors();
}

TEST(OodScores, SignConventionNoiseIsMoreOod) {
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  DatasetOptions v;
  v.split = "val";
  const auto mu = load_dataset("mnist", v).images.mean(0);  // [1,28,28]
  GaussianEnergy e(mu, 0.3);
  const auto reports = evaluate_ood(e, OodEvalOptions()
                                           .in("mnist")
                                           .ood({"uniform", "gaussian"})
                                           .scores({"energy", "grad-norm"})
                                           .n_in(400)
                                           .n_ood(300)
                                           .progress(false));
  ASSERT_EQ(reports.size(), 2u);
  for (const auto& r : reports)
    for (const auto& o : r.ood) {
      EXPECT_GT(o.metrics.auroc, 0.9) << r.score << " vs " << o.name;
      EXPECT_LT(o.metrics.fpr95, 0.2) << r.score << " vs " << o.name;
      EXPECT_GT(o.mean_score, r.mean_score_in) << r.score << " vs " << o.name;
    }
  // grad-norm = ||x - mu|| / sigma^2 is monotone in this energy: same ranking.
  EXPECT_NEAR(reports[0].ood[0].metrics.auroc, reports[1].ood[0].metrics.auroc, 1e-6);
  // The in-distribution scores are those of the TEST split.
  DatasetOptions t;
  t.split = "test";
  t.n = 400;
  const auto test = load_dataset("mnist", t);
  EXPECT_TRUE(torch::allclose(reports[0].in_scores, ood_score(e, test.images, "energy"), 0, 1e-9));
  EXPECT_TRUE(std::isnan(reports[0].accuracy));  // no classifier
  EXPECT_FALSE(reports[0].to_json().contains("classifier"));
}

TEST(OodProtocol, GroupsSeenSetsAndTheirMeans) {
  // The label rules: the other digit/clothing set and letters are near, noise and real photos far.
  EXPECT_EQ(ood_group("fashion-mnist", "mnist"), "near");
  EXPECT_EQ(ood_group("mnist", "fashion-mnist"), "near");
  EXPECT_EQ(ood_group("mnist", "letters"), "near");
  EXPECT_EQ(ood_group("mnist", "vflip:mnist"), "near");
  EXPECT_EQ(ood_group("fashion-mnist", "invert:mnist"), "near");
  for (const char* far : {"uniform", "gaussian", "constant", "icons", "photos", "x.npy"})
    EXPECT_EQ(ood_group("mnist", far), "far") << far;
  EXPECT_TRUE(is_seen("invert:mnist", {"uniform", "invert:*"}));
  EXPECT_TRUE(is_seen("uniform", {"uniform", "invert:*"}));
  EXPECT_FALSE(is_seen("gaussian", {"uniform", "invert:*"}));
  EXPECT_FALSE(is_seen("vflip:mnist", {"invert:*"}));

  // Cards: synthesised training outliers -> uniform and invert:*; ensembles inherit their members'.
  const auto root = tmpdir("seen");
  make_dirs(root + "/eft");
  make_dirs(root + "/plain");
  make_dirs(root + "/ens");
  write_file_atomic(root + "/eft/card.json", json{{"options", {{"outliers", "pixel permutation, ..."}}}}.dump());
  write_file_atomic(root + "/plain/card.json", json{{"options", {{"lr", 1e-3}}}, {"ood_choices_saw", {"mnist"}}}.dump());
  write_file_atomic(root + "/ens/card.json",
                    json{{"members", json::array({json{{"model", "../plain"}}, json{{"model", "../eft"}}})}}.dump());
  EXPECT_EQ(seen_in_training(root + "/eft"), (std::vector<std::string>{"uniform", "invert:*"}));
  EXPECT_EQ(seen_in_training(root + "/plain"), (std::vector<std::string>{"mnist"}));
  EXPECT_EQ(seen_in_training(root + "/ens"), (std::vector<std::string>{"mnist", "uniform", "invert:*"}));

  // A seen set is reported but left out of every mean; the group means average the rest.
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  GaussianEnergy e(torch::full({1, 28, 28}, 0.1f), 0.3);
  const auto r = evaluate_ood(e, OodEvalOptions()
                                     .in("mnist")
                                     .ood({"uniform", "gaussian", "vflip:mnist", "invert:mnist"})
                                     .n_in(200)
                                     .n_ood(100)
                                     .seen({"uniform", "invert:*"})
                                     .progress(false))[0];
  ASSERT_EQ(r.ood.size(), 4u);
  EXPECT_TRUE(r.ood[0].seen);
  EXPECT_FALSE(r.ood[1].seen);
  EXPECT_TRUE(r.ood[3].seen);
  EXPECT_NEAR(r.mean.auroc, (r.ood[1].metrics.auroc + r.ood[2].metrics.auroc) / 2, 1e-12);
  EXPECT_EQ(r.mean.n_ood, 200);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_EQ(r.groups[0].first, "near");
  EXPECT_NEAR(r.groups[0].second.auroc, r.ood[2].metrics.auroc, 1e-12);
  EXPECT_EQ(r.groups[1].first, "far");
  EXPECT_NEAR(r.groups[1].second.auroc, r.ood[1].metrics.auroc, 1e-12);
  const json j = r.to_json();
  EXPECT_EQ(j["ood"][0]["seen"], true);
  EXPECT_EQ(j["ood"][2]["group"], "near");
  EXPECT_TRUE(j["groups"].contains("far"));
  const auto table = format_table({r});
  EXPECT_NE(table.find("uniform (far, seen)"), std::string::npos) << table;
  EXPECT_NE(table.find("mean near"), std::string::npos) << table;

  // The val split: in-distribution val images against validation OOD only.
  const auto v = evaluate_ood(e, OodEvalOptions().in("mnist").split("val").ood({"val-ood"}).n_in(100).n_ood(50).progress(false))[0];
  ASSERT_EQ(v.ood.size(), 4u);
  EXPECT_EQ(v.ood[0].name, "pixel-shuffle");
  EXPECT_EQ(v.ood[3].name, "mixup");
  EXPECT_EQ(v.ood[1].n, 50);
  EXPECT_EQ(v.ood[2].group, "val");
  EXPECT_EQ(v.to_json()["split"], "val");
  DatasetOptions dv;
  dv.split = "val";
  dv.n = 100;
  EXPECT_TRUE(torch::allclose(v.in_scores, ood_score(e, load_dataset("mnist", dv).images, "energy"), 0, 1e-9));
  EXPECT_THROW(evaluate_ood(e, OodEvalOptions().in("mnist").split("val").ood({"uniform"}).progress(false)), UsageError);
  EXPECT_THROW(evaluate_ood(e, OodEvalOptions().in("mnist").split("fit").ood({"uniform"}).progress(false)), UsageError);
}

TEST(OodScores, CombinedIsComplexityScoreGatedByTheLargestValidationEnergy) {
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  DatasetOptions v;
  v.split = "val";
  v.n = 300;
  const auto val = load_dataset("mnist", v).images;
  GaussianEnergy e(val.mean(0), 0.3);
  // Unfitted: a usage error that says how to fit it.
  EXPECT_THROW(ood_score(e, val, "combined"), UsageError);
  EXPECT_THROW(fit_combined_stats(e, "mnist", "test", 100), UsageError);  // never on test

  // The statistics are plain mean / sd / max of the two component scores (oracle: torch).
  const CombinedStats z = fit_combined_stats(e, val);
  const auto en = ood_score(e, val, "energy"), ec = ood_score(e, val, "energy-complexity");
  EXPECT_NEAR(z.energy_mean, en.mean().item<double>(), 1e-9);
  EXPECT_NEAR(z.energy_sd, en.std().item<double>(), 1e-9);
  EXPECT_NEAR(z.energy_max, en.max().item<double>(), 1e-9);
  EXPECT_NEAR(z.complexity_mean, ec.mean().item<double>(), 1e-9);
  EXPECT_NEAR(z.complexity_sd, ec.std().item<double>(), 1e-9);

  // Validation images are never gated: their combined score is the z of energy-complexity.
  const auto so = ScoreOptions().combined(z);
  const auto c_val = ood_score(e, val, "combined", so);
  EXPECT_TRUE(torch::allclose(c_val, (ec - z.complexity_mean) / z.complexity_sd, 0, 1e-9));
  // Uniform noise lies far beyond the Gaussian's largest validation energy: every image is gated
  // and outranks every ungated one.
  auto gen = at::detail::createCPUGenerator(3);
  const auto noise = torch::rand({50, 1, 28, 28}, gen);
  const auto c_noise = ood_score(e, noise, "combined", so);
  const auto en_noise = ood_score(e, noise, "energy");
  ASSERT_TRUE(en_noise.gt(z.energy_max).all().item<bool>());
  EXPECT_TRUE(torch::allclose(c_noise, CombinedStats::kGate + (en_noise - z.energy_mean) / z.energy_sd, 0, 1e-6));
  EXPECT_GT(c_noise.min().item<double>(), c_val.max().item<double>());

  // Reports and detectors carry the statistics; a detector without them is refused.
  Detector d = fit_detector(c_val, 95);
  d.model = "m";
  d.model_hash = "0123";
  d.score = "combined";
  d.combined = z;
  const Detector back = Detector::from_json(d.to_json());
  EXPECT_TRUE(back.combined.fitted);
  EXPECT_DOUBLE_EQ(back.combined.energy_max, z.energy_max);
  EXPECT_DOUBLE_EQ(back.combined.complexity_sd, z.complexity_sd);
  json j = d.to_json();
  j.erase("combined_stats");
  EXPECT_THROW(Detector::from_json(j, "x.json"), DataError);
  j = d.to_json();
  j["combined_stats"]["energy"]["sd"] = 0;
  EXPECT_THROW(Detector::from_json(j, "x.json"), DataError);
}

// ---------------------------------------------------------------- calibration

namespace {
void malformed_detectors_are_data_errors() {
  const auto root = tmpdir("malformed");
  Detector d = fit_detector(torch::tensor({1.0, 2.0, 3.0}), 90);
  d.model = "m";
  d.model_hash = "0123";
  const json good = d.to_json();
  EXPECT_NO_THROW(Detector::from_json(good));
  auto bad = [&](const std::function<void(json&)>& edit, const std::string& why) {
    json j = good;
    edit(j);
    EXPECT_THROW(Detector::from_json(j, "x.json"), DataError) << why;
  };
  bad([](json& j) { j["format"] = "other"; }, "format");
  bad([](json& j) { j.erase("threshold"); }, "missing threshold");
  bad([](json& j) { j["model_hash"] = 7; }, "hash type");
  bad([](json& j) { j["val_scores"] = {3.0, 1.0}; }, "unsorted");
  bad([](json& j) { j["val_scores"] = json::array(); }, "empty");
  bad([](json& j) { j["n_val"] = 4; }, "n_val mismatch");
  bad([](json& j) { j["score"] = "likelihood"; }, "score");
  bad([](json& j) { j["temperature"] = 0; }, "temperature");
  write_file_atomic(root + "/broken.json", "{\"format\": ");
  EXPECT_THROW(Detector::load(root + "/broken.json"), DataError);
  EXPECT_THROW(Detector::load(root + "/absent.json"), DataError);
}
}  // namespace

TEST(OodDetector, FitRulePValuesAndMalformedJson) {
  std::vector<float> v;
  for (int i = 20; i >= 1; --i) v.push_back(float(i));  // unsorted on purpose
  const auto d = fit_detector(torch::tensor(v), 95);
  EXPECT_EQ(d.n_val(), 20);
  EXPECT_EQ(d.threshold, 19.0);  // k = ceil(0.95 * 20) = 19
  EXPECT_TRUE(std::is_sorted(d.val_scores.begin(), d.val_scores.end()));
  EXPECT_FALSE(d.is_ood(19.0));
  EXPECT_TRUE(d.is_ood(19.5));
  EXPECT_DOUBLE_EQ(d.p_value(100), 1.0 / 21);
  EXPECT_DOUBLE_EQ(d.p_value(20), 2.0 / 21);
  EXPECT_DOUBLE_EQ(d.p_value(19.5), 2.0 / 21);
  EXPECT_DOUBLE_EQ(d.p_value(-5), 1.0);
  // OOD <=> p <= (1 + n - k) / (n + 1), ties included.
  const double cut = (1.0 + 20 - 19) / 21;
  for (double s = 0; s <= 22; s += 0.25) EXPECT_EQ(d.is_ood(s), d.p_value(s) <= cut + 1e-15) << s;
  EXPECT_EQ(fit_detector(torch::tensor(v), 100).threshold, 20.0);
  EXPECT_EQ(fit_detector(torch::tensor(v), 0.1).threshold, 1.0);
  EXPECT_EQ(fit_detector(torch::tensor(v), 50).threshold, 10.0);
  EXPECT_THROW(fit_detector(torch::tensor(v), 0), UsageError);
  EXPECT_THROW(fit_detector(torch::tensor(v), 101), UsageError);
  EXPECT_THROW(fit_detector(torch::empty({0}), 95), UsageError);
  malformed_detectors_are_data_errors();
}

TEST(OodCalibration, FlagsAboutFivePercentOfFreshInDistribution) {
  // Analytic setup: x ~ N(0, I) in 16 dims, E = ||x||^2 / 2. Calibrate at the
  // 95th percentile on 2000 validation draws, flag 2000 fresh draws; repeat
  // 20 times. Expected flagged share (n + 1 - k) / (n + 1) = 101/2001.
  GaussianEnergy e(torch::zeros({1, 4, 4}), 1.0);
  const int reps = 20, n_val = 2000, n_new = 2000;
  double flagged = 0;
  for (int r = 0; r < reps; ++r) {
    auto g = at::detail::createCPUGenerator(100 + r);
    const auto d = fit_detector(ood_score(e, torch::randn({n_val, 1, 4, 4}, g), "energy"), 95);
    const auto s = to_vector(ood_score(e, torch::randn({n_new, 1, 4, 4}, g), "energy"));
    for (double v : s) flagged += d.is_ood(v);
    // The p-values of fresh in-distribution data are ~uniform: ~10% below 0.1.
    if (r == 0) {
      int below = 0;
      for (double v : s) below += d.p_value(v) <= 0.1;
      EXPECT_NEAR(below / double(n_new), 0.1, 4 * std::sqrt(0.1 * 0.9 * (1.0 / n_new + 1.0 / n_val)));
    }
  }
  const double rate = flagged / (reps * n_new), p = 101.0 / 2001;
  // Binomial sd of the fresh draws plus the sd of the threshold's true
  // exceedance probability (Beta, ~p(1-p)/n_val), over 20 repetitions; 4 sd.
  const double sd = std::sqrt(p * (1 - p) * (1.0 / n_new + 1.0 / n_val) / reps);
  EXPECT_NEAR(rate, p, 4 * sd) << "flagged " << rate;
}

TEST(OodCalibration, ModelOnMnistValFlagsAboutFivePercentOfTest) {
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  const auto dir = save_random_classifier(tmpdir("calib") + "/m", 3);
  const auto d = calibrate_model(dir, CalibrateOptions().in("mnist").percentile(95).progress(false));
  EXPECT_EQ(d.split, "val");
  EXPECT_EQ(d.n_val(), 800);  // 1 in 10 of mnist's 8000 training images
  EXPECT_EQ(d.model, dir);
  EXPECT_EQ(d.model_hash, model_hash(dir));
  auto e = load_model(dir);
  DatasetOptions t;
  t.split = "test";
  const auto test = load_dataset("mnist", t);
  const auto preds = predict(d, *e, test.images);
  ASSERT_EQ(preds.size(), 2000u);
  double flagged = 0;
  for (const auto& p : preds) flagged += p.ood;
  const double p = (801.0 - 760) / 801, sd = std::sqrt(p * (1 - p) * (1.0 / 2000 + 1.0 / 800));
  EXPECT_NEAR(flagged / 2000, p, 4 * sd);
  EXPECT_THROW(calibrate(*e, CalibrateOptions().in("mnist").split("test")), UsageError);
  EXPECT_THROW(calibrate(*e, CalibrateOptions().in("mnist").score("nope")), UsageError);
}

TEST(OodDetector, JsonRoundTripAndMismatchedModelRefused) {
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  const auto root = tmpdir("detector");
  const auto a = save_random_classifier(root + "/a", 1), b = save_random_classifier(root + "/b", 2);
  const auto d = calibrate_model(a, CalibrateOptions().in("mnist").n(100).score("msp").temperature(1.5).progress(false));
  const std::string path = root + "/det.json";
  d.save(path);
  const auto r = Detector::load(path);
  EXPECT_EQ(r.model, a);
  EXPECT_EQ(r.model_hash, d.model_hash);
  EXPECT_EQ(r.score, "msp");
  EXPECT_EQ(r.temperature, 1.5);
  EXPECT_EQ(r.threshold, d.threshold);
  EXPECT_EQ(r.percentile, 95.0);
  EXPECT_EQ(r.in, "mnist");
  EXPECT_EQ(r.split, "val");
  EXPECT_EQ(r.val_scores, d.val_scores);  // bit-exact doubles
  const auto j = json::parse(slurp(path));
  for (const char* k : {"model", "model_hash", "score", "temperature", "threshold", "percentile", "n_val", "val_scores"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["n_val"], 100);

  // The right model passes; another model, or changed weights, are refused.
  EXPECT_NO_THROW(check_model(r, a));
  EXPECT_EQ(detector_model_path(r, path), a);
  EXPECT_EQ(detector_model_path(r, path, b), b);
  try {
    check_model(r, b);
    ADD_FAILURE() << "mismatched model accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("does not match"), std::string::npos) << e.what();
  }
  save_random_classifier(a, 5);  // same path, new weights
  EXPECT_THROW(check_model(r, a), DataError);

  // Predictions carry the detector's score and p-values.
  auto e = load_model(b);
  const auto x = load_dataset("mnist", DatasetOptions()).images.narrow(0, 0, 5);
  const auto preds = predict(r, *e, x);
  ASSERT_EQ(preds.size(), 5u);
  const auto s = to_vector(ood_score(*e, x, "msp"));
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(preds[i].index, (int64_t)i);
    EXPECT_EQ(preds[i].score, s[i]);
    EXPECT_EQ(preds[i].ood, s[i] > r.threshold);
    EXPECT_EQ(preds[i].p_value, r.p_value(s[i]));
    const auto pj = preds[i].to_json("msp");
    for (const char* k : {"index", "energy", "ood", "p_value"}) EXPECT_TRUE(pj.contains(k)) << k;
  }
}

// ---------------------------------------------------------------- end to end

TEST(OodEval, TinyTrainedClassifierEndToEnd) {
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  const auto root = tmpdir("e2e");
  const std::string dir = root + "/clf";
  train(TrainOptions()
            .task("clf")
            .data("mnist")
            .arch({{"type", "conv-classifier"}, {"width", 4}})
            .steps(6)
            .batch(8)
            .eval_n(40)
            .seed(4)
            .out(dir));
  auto e = load_model(dir);
  const auto o = OodEvalOptions()
                     .in("mnist")
                     .ood({"fashion-mnist", "uniform", "vflip:mnist"})
                     .scores(parse_scores("all", *e))
                     .n_in(120)
                     .n_ood(60)
                     .bootstrap(40)
                     .seed(9)
                     .progress(false);
  const auto reports = evaluate_ood(*e, o);
  // A built-in classifier gets every score, the post-hoc detectors included.
  ASSERT_EQ(reports.size(), score_names().size());
  ASSERT_EQ(reports.size(), 11u);
  for (const auto& r : reports) {
    EXPECT_EQ(r.n_in, 120);
    ASSERT_EQ(r.ood.size(), 3u);
    EXPECT_GE(r.accuracy, 0.0);
    EXPECT_LE(r.accuracy, 1.0);
    for (const auto& x : r.ood) {
      EXPECT_EQ(x.n, 60);
      for (double m : {x.metrics.auroc, x.metrics.aupr_in, x.metrics.aupr_out, x.metrics.fpr95})
        EXPECT_TRUE(m >= 0 && m <= 1) << r.score << " " << x.name;
      EXPECT_TRUE(x.has_ci);
      EXPECT_LE(x.ci.auroc[0], x.ci.auroc[1]);
    }
    EXPECT_NEAR(r.mean.auroc, (r.ood[0].metrics.auroc + r.ood[1].metrics.auroc + r.ood[2].metrics.auroc) / 3, 1e-12);
    EXPECT_EQ(r.mean.n_ood, 180);
  }
  // Same seed -> same report.
  const auto again = evaluate_ood(*e, o);
  EXPECT_EQ(again[1].ood[1].metrics.auroc, reports[1].ood[1].metrics.auroc);
  EXPECT_EQ(again[0].ood[0].ci.auroc[0], reports[0].ood[0].ci.auroc[0]);

  // JSON: DESIGN.md's schema.
  const json one = reports[0].to_json();
  EXPECT_EQ(one["score"], "energy");
  EXPECT_EQ(one["in"], "mnist");
  EXPECT_EQ(one["n_in"], 120);
  ASSERT_EQ(one["ood"].size(), 3u);
  for (const char* k : {"name", "n", "auroc", "aupr_in", "aupr_out", "fpr95"}) EXPECT_TRUE(one["ood"][0].contains(k)) << k;
  EXPECT_EQ(one["ood"][0]["name"], "fashion-mnist");
  EXPECT_TRUE(one["classifier"]["accuracy"].is_number());
  const json all = reports_json(reports);
  ASSERT_EQ(all["scores"].size(), 11u);
  EXPECT_EQ(all["scores"][3]["score"], "grad-norm");
  EXPECT_EQ(reports_json({reports[0]}), one);

  // Tables, CSV, Markdown, plots.
  const auto table = format_table(reports);
  for (const char* s : {"fashion-mnist", "uniform", "vflip:mnist", "mean", "AUROC", "FPR95", "msp", "grad-norm"})
    EXPECT_NE(table.find(s), std::string::npos) << s << "\n" << table;
  const auto single = format_table({reports[0]});
  for (const char* s : {"AUPR-In", "AUPR-Out", "mean"}) EXPECT_NE(single.find(s), std::string::npos) << s;
  const auto csv = format_csv(reports);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 11 * 4);
  EXPECT_NE(format_markdown(reports).find("| OOD |"), std::string::npos);
  // Per-image scores: one row per image (120 in + 3 x 60 OOD), one column per
  // score, values equal to the reports' own tensors.
  const auto per = format_scores_csv(reports);
  EXPECT_EQ(std::count(per.begin(), per.end(), '\n'), 1 + 120 + 180);
  EXPECT_EQ(per.rfind("set,index,energy,msp,", 0), 0u) << per.substr(0, 80);
  std::istringstream lines(per);
  std::string header, first;
  std::getline(lines, header);
  std::getline(lines, first);
  EXPECT_EQ(first.rfind("in:mnist,0,", 0), 0u) << first;
  EXPECT_NEAR(std::stod(first.substr(first.find(',', 9) + 1)), reports[0].in_scores[0].item<double>(), 1e-6);
  const auto pngs = write_ood_plots(reports, root + "/plots/sub");
  EXPECT_EQ(pngs.size(), 11u * 3 + 11);
  for (const auto& p : pngs) {
    const auto img = read_tensor(p);
    EXPECT_EQ(img.dim(), 2) << p;
    EXPECT_GT(img.size(1), 400) << p;
    // Not blank: some dark ink.
    EXPECT_GT((img < 64).sum().item<int64_t>(), 500) << p;
  }
  EXPECT_TRUE(exists(root + "/plots/sub/energy-hist-vflip-mnist.png"));
  EXPECT_TRUE(exists(root + "/plots/sub/msp-roc.png"));

  EXPECT_THROW(evaluate_ood(*e, OodEvalOptions().in("mnist").ood({}).progress(false)), UsageError);
  EXPECT_THROW(evaluate_ood(*e, OodEvalOptions().in("mnist").ood({"nope"}).progress(false)), UsageError);
}

TEST(OodCli, EvalCalibratePredict) {
  if (!have_mnist()) GTEST_SKIP() << "no mnist in " << data_dir();
  const std::string ebm = EBM_BINARY;
  if (!exists(ebm)) GTEST_SKIP() << "no CLI binary at " << ebm;
  const auto root = tmpdir("cli");
  // The card's default_score is used when --score is omitted; "all" = every score.
  torch::manual_seed(6);
  NativeModel net(json{{"type", "conv-classifier"}, {"width", 4}});
  net.set_card({{"default_score", "all"}});
  save_model(root + "/m", net);
  const std::string m = root + "/m", other = save_random_classifier(root + "/o", 7);
  const std::string q = " --threads 1 -q 2>" + root + "/err";
  // `--json -`: stdout is pure JSON, the table goes to stderr.
  ASSERT_EQ(run(ebm + " ood eval --model " + m + " --in mnist --ood uniform,constant --n-in 100 --n-ood 50 --json -"
                      " --csv " + root + "/r.csv > " + root + "/r.json" + q), 0)
      << slurp(root + "/err");
  const json r = json::parse(slurp(root + "/r.json"));
  ASSERT_EQ(r["scores"].size(), 11u);
  EXPECT_EQ(r["scores"][0]["score"], "energy");
  EXPECT_EQ(r["scores"][0]["ood"][1]["name"], "constant");
  EXPECT_EQ(r["scores"][0]["n_in"], 100);
  EXPECT_NE(slurp(root + "/err").find("mean"), std::string::npos);
  const auto csv = slurp(root + "/r.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 11 * 3);
  // The post-hoc reports say what their choices were made on: validation data only.
  for (const auto& sc : r["scores"])
    if (is_posthoc(sc["score"])) {
      EXPECT_NE(sc["choices"]["chosen_on"].get<std::string>().find("mnist/val"), std::string::npos) << sc["score"];
      EXPECT_EQ(sc["choices"]["chosen_on"].get<std::string>().find("uniform"), std::string::npos) << sc["score"];
    }

  ASSERT_EQ(run(ebm + " ood calibrate --model " + m + " --in mnist --percentile 90 --out " + root + "/det.json > /dev/null" + q), 0)
      << slurp(root + "/err");
  const auto d = Detector::load(root + "/det.json");
  EXPECT_EQ(d.percentile, 90.0);
  write_tensor(root + "/x.npy", torch::rand({3, 1, 28, 28}));
  ASSERT_EQ(run(ebm + " ood predict --detector " + root + "/det.json --input " + root + "/x.npy > " + root + "/p.jsonl" + q), 0)
      << slurp(root + "/err");
  std::istringstream lines(slurp(root + "/p.jsonl"));
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    const json p = json::parse(line);
    EXPECT_EQ(p["index"], count);
    for (const char* k : {"energy", "ood", "p_value"}) EXPECT_TRUE(p.contains(k)) << k;
    ++count;
  }
  EXPECT_EQ(count, 3);
  // A mismatched model: runtime error (exit 1), one line naming the problem.
  EXPECT_EQ(run(ebm + " ood predict --detector " + root + "/det.json --input " + root + "/x.npy --model " + other +
                " > /dev/null" + q), 1);
  const auto err = slurp(root + "/err");
  EXPECT_NE(err.find("does not match"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  // A usage error: exit 2, and no report written.
  EXPECT_EQ(run(ebm + " ood eval --model " + m + " --in mnist --ood nope --json " + root + "/bad.json" + q), 2);
  EXPECT_FALSE(exists(root + "/bad.json"));
  // ood ensemble: a model folder that eval reads like any other; test is refused as the fit split.
  ASSERT_EQ(run(ebm + " ood ensemble --members " + m + "," + other + " --in mnist --n 50 --out " + root +
                "/ens > /dev/null" + q), 0)
      << slurp(root + "/err");
  EXPECT_EQ(load_card(root + "/ens")["members"].size(), 2u);
  ASSERT_EQ(run(ebm + " ood eval --model " + root + "/ens --in mnist --ood uniform --n-in 50 --n-ood 20 --json " +
                root + "/ens.json > /dev/null" + q), 0)
      << slurp(root + "/err");
  EXPECT_EQ(json::parse(slurp(root + "/ens.json"))["score"], "energy");
  EXPECT_EQ(run(ebm + " ood ensemble --members " + m + " --in mnist --split test --out " + root + "/ens2" + q), 2);
  EXPECT_FALSE(exists(root + "/ens2/card.json"));
}
