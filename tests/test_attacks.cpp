// test_attacks.cpp: attacks (FGSM, PGD, CW-L2, BPDA+EOT) and purification.
// Oracles: a linear classifier whose cross-entropy gradient has a known sign,
// and the analytic Gaussian energy for the purifier.
// Suites are lower-case so that `ctest -R 'attack|defend|purif'` selects them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "ebm/defend/attacks.h"
#include "ebm/core/common.h"
#include "ebm/core/energy.h"
#include "ebm/core/models.h"
#include "ebm/defend/defend.h"
#include "ebm/defend/purify.h"

namespace {

using namespace ebm;

// logits = flatten(x) W^T + b. W: [K,D], b: [K].
class LinearClassifier : public Energy {
 public:
  LinearClassifier(torch::Tensor W, torch::Tensor b) : W_(std::move(W)), b_(std::move(b)) {}
  torch::Tensor logits(const torch::Tensor& x) override { return torch::addmm(b_, x.flatten(1), W_.t()); }
  torch::Tensor energy(const torch::Tensor& x) override { return free_energy(logits(x)); }
  int64_t num_classes() const override { return W_.size(0); }
  std::string describe() const override { return "linear-classifier"; }

 private:
  torch::Tensor W_, b_;
};

torch::Tensor ce(Energy& c, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard ng;
  return per_example_ce(c.logits(x), y);
}

// The oracle of purified_logits: o.draws() single draws one after another on
// `gen`, each classified, the logits summed in draw order and averaged.
torch::Tensor draws_one_by_one(Energy& clf, Energy& ebm, const torch::Tensor& x, const PurifyOptions& o,
                               at::Generator& gen) {
  torch::Tensor sum;
  for (int64_t k = 0; k < o.draws(); ++k) {
    auto zk = clf.logits(purify(ebm, x, o, gen)).detach();
    sum = k ? sum + zk : zk;
  }
  return sum / double(o.draws());
}

// Exactly inside the eps-ball (as float32 computes x +- eps) and the [0,1] box.
void expect_in_ball(const torch::Tensor& adv, const torch::Tensor& x, double eps) {
  EXPECT_TRUE((adv <= x + eps).all().item<bool>());
  EXPECT_TRUE((adv >= x - eps).all().item<bool>());
  EXPECT_GE(adv.min().item<double>(), 0.0);
  EXPECT_LE(adv.max().item<double>(), 1.0);
  EXPECT_LE((adv - x).abs().max().item<double>(), eps + 1e-7);
}

TEST(attack, FgsmEqualsSignGradientStep) {
  torch::manual_seed(1);
  LinearClassifier c(torch::randn({3, 16}), torch::zeros({3}));
  auto x = torch::rand({5, 1, 4, 4}) * 0.4 + 0.3;  // interior: no box clamp at eps 0.1
  auto y = torch::tensor({0, 1, 2, 0, 1}, torch::kLong);
  auto xg = x.clone().requires_grad_(true);
  auto loss = per_example_ce(c.logits(xg), y).sum();
  auto g = torch::autograd::grad({loss}, {xg})[0];
  auto adv = fgsm(classifier_model(c), x, y, FgsmOptions().eps(0.1));
  EXPECT_TRUE(torch::allclose(adv, x + 0.1 * g.sign(), 0, 1e-7));
  expect_in_ball(adv, x, 0.1);
  EXPECT_GT(ce(c, adv, y).sum().item<double>(), ce(c, x, y).sum().item<double>());
}

// Two classes, label 0: d CE / dx = p1 * (w1 - w0), so every PGD step is
// +step * sign(w1 - w0) and the result is known in closed form.
TEST(attack, PgdOnLinearClassifierMatchesHandDerivedResult) {
  torch::manual_seed(2);
  // w0 = -w1: the gradient p1*w1 + (p0-1)*w0 = (p1 + 1 - p0)*w1 keeps its sign
  // even when float32 rounds p0 - 1 to 0.
  auto v = torch::randn({1, 16});
  auto w = torch::cat({-v, v});
  auto d = (w[1] - w[0]).sign().view({1, 1, 4, 4});
  auto y = torch::zeros({1}, torch::kLong);
  auto x = torch::rand({1, 1, 4, 4});  // anywhere in [0,1]: the box clamp matters
  {
    // Never fooled (bias 40 for class 0 beats any 0.3-perturbation of 16
    // pixels): the last iterate, x + eps*d, clamped to the box.
    LinearClassifier c(w, torch::tensor({40.f, 0.f}));
    auto adv = pgd(classifier_model(c), x, y, PgdOptions().eps(0.3).steps(40).step_size(0.01).random_start(false));
    EXPECT_TRUE(torch::allclose(adv, (x + 0.3 * d).clamp(0, 1), 0, 1e-6));
    expect_in_ball(adv, x, 0.3);
  }
  {
    // Interior x; margin m0 = 12.5 steps' worth: logit0 - logit1 = m0 - t*0.01*|w1-w0|_1
    // crosses 0 between t = 12 and 13, so PGD returns the first fooling iterate x + 0.13 d.
    auto xi = torch::rand({1, 1, 4, 4}) * 0.2 + 0.4;
    const double l1 = (w[1] - w[0]).abs().sum().item<double>();
    const double gap = ((w[0] - w[1]) * xi.flatten()).sum().item<double>();  // logit0 - logit1 without bias
    const float m0 = float(12.5 * 0.01 * l1 - gap);
    LinearClassifier c(w, torch::tensor({m0, 0.f}));
    auto adv = pgd(classifier_model(c), xi, y, PgdOptions().eps(0.3).steps(40).step_size(0.01).random_start(false));
    EXPECT_TRUE(torch::allclose(adv, xi + 0.13 * d, 0, 1e-5)) << (adv - xi).abs().max().item<double>();
  }
}

TEST(attack, PgdZeroStepsNoRandomStartIsIdentity) {
  torch::manual_seed(3);
  LinearClassifier c(torch::randn({3, 16}), torch::zeros({3}));
  auto x = torch::rand({4, 1, 4, 4});
  auto y = torch::tensor({0, 1, 2, 0}, torch::kLong);
  auto adv = pgd(classifier_model(c), x, y, PgdOptions().steps(0).random_start(false));
  EXPECT_TRUE(torch::equal(adv, x));
}

// A linear classifier on 28x28 (the loss must rise) and the shipped conv
// classifier when present; pixels at the edges 0 and 1 included.
TEST(attack, LinfAttacksStayExactlyInEpsBallAndBoxAndRaiseLoss) {
  torch::manual_seed(4);
  std::vector<std::shared_ptr<Energy>> models{
      std::make_shared<LinearClassifier>(torch::randn({10, 784}) * 0.05, torch::zeros({10}))};
  const std::string shipped = std::string(EBM_SOURCE_DIR) + "/models/mnist-clf";
  if (std::ifstream(shipped + "/card.json")) models.push_back(load_model(shipped));
  auto x = torch::rand({6, 1, 28, 28});
  x.index_put_({torch::indexing::Slice(), 0, 0}, 0.0f);
  x.index_put_({torch::indexing::Slice(), 0, 1}, 1.0f);
  for (auto& cp : models) {
    Energy& c = *cp;
    // Labels = the model's own predictions: every example starts correctly
    // classified, so the kept (first misclassified or final) iterates all
    // carry a higher loss than the clean images.
    torch::Tensor y;
    {
      torch::NoGradGuard ng;
      y = c.logits(x).argmax(1);
    }
    const double base = ce(c, x, y).sum().item<double>();
    const bool linear = c.describe() == "linear-classifier";
    // The trained conv net is saturated on noise images (zero loss, zero
    // gradient): for it only the ball is checked, and at one eps (speed).
    for (double eps : linear ? std::vector<double>{0.05, 0.3, 1.0} : std::vector<double>{0.3}) {
      auto a1 = fgsm(classifier_model(c), x, y, FgsmOptions().eps(eps));
      auto a2 = pgd(classifier_model(c), x, y, PgdOptions().eps(eps).steps(10).step_size(eps / 4).restarts(2).seed(7));
      Transform noisy = [](const torch::Tensor& xx, at::Generator& g) {
        return (xx + torch::randn(xx.sizes(), g) * 0.1).clamp(0, 1);
      };
      auto a3 = pgd(bpda_eot_model(c, noisy, 3, 5), x, y, PgdOptions().eps(eps).steps(5).step_size(eps / 4));
      for (const auto& a : {a1, a2, a3}) {
        expect_in_ball(a, x, eps);
        if (linear) {
          EXPECT_GT(ce(c, a, y).sum().item<double>(), base) << " eps " << eps;
        }
      }
    }
  }
}

TEST(attack, CwReducesMarginAndStaysInBox) {
  torch::manual_seed(5);
  LinearClassifier c(torch::randn({3, 16}) * 0.5, torch::zeros({3}));
  auto x = torch::rand({8, 1, 4, 4});
  torch::Tensor y;
  {
    torch::NoGradGuard ng;
    y = c.logits(x).argmax(1);  // correctly classified by construction
  }
  auto margin = [&](const torch::Tensor& xx) {
    torch::NoGradGuard ng;
    auto z = c.logits(xx);
    auto oh = torch::one_hot(y, 3).to(torch::kBool);
    return z.masked_select(oh) - z.masked_fill(oh, -1e9).amax(1);
  };
  auto adv = cw_l2(c, x, y, CwOptions().steps(100).binary_search_steps(4).lr(0.05));
  EXPECT_GE(adv.min().item<double>(), 0.0);
  EXPECT_LE(adv.max().item<double>(), 1.0);
  EXPECT_LT(margin(adv).sum().item<double>(), margin(x).sum().item<double>());
  // Fooled examples are misclassified; a linear 3-class model on 16 pixels is easy.
  EXPECT_GE((margin(adv) < 0).sum().item<int64_t>(), 6);
}

// Deterministic purifier (no noise at all): the BPDA gradient must equal the
// classifier's own gradient at the purified point, for any EOT count.
TEST(attack, BpdaGradientEqualsClassifierGradientAtPurifiedPoint) {
  torch::manual_seed(6);
  LinearClassifier c(torch::randn({3, 16}), torch::zeros({3}));
  GaussianEnergy g(torch::full({1, 4, 4}, 0.5f), 0.3);
  auto p = PurifyOptions().steps(5).step_size(0.02).noise(0).init_noise(0);
  Energy* ge = &g;
  Transform t = [ge, p](const torch::Tensor& xx, at::Generator& gen) { return purify(*ge, xx, p, gen); };
  auto x = torch::rand({4, 1, 4, 4});
  auto y = torch::tensor({0, 1, 2, 0}, torch::kLong);
  auto gen = at::detail::createCPUGenerator(0);
  auto xp = purify(g, x, p, gen);
  EXPECT_FALSE(torch::allclose(xp, x));  // the purifier does something
  auto want = classifier_model(c).grad(xp, y, nullptr);
  auto got = bpda_eot_model(c, t, 3).grad(x, y, nullptr);
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-7));
}

TEST(purify, GaussianEnergyMovesTowardMean) {
  torch::manual_seed(7);
  const auto mu = torch::full({1, 8, 8}, 0.5f);
  GaussianEnergy g(mu, 0.2);
  auto x = torch::rand({16, 1, 8, 8});
  auto gen = at::detail::createCPUGenerator(1);
  const double d0 = (x - mu).pow(2).mean().item<double>();
  // grad = (x - mu)/0.04; step 0.01 contracts the distance by 0.75 per step.
  auto p = PurifyOptions().steps(20).step_size(0.01).noise(0.005).init_noise(0.1);
  auto xp = purify(g, x, p, gen);
  EXPECT_LT((xp - mu).pow(2).mean().item<double>(), 0.01 * d0);
  EXPECT_GE(xp.min().item<double>(), 0.0);
  EXPECT_LE(xp.max().item<double>(), 1.0);
  // Zero steps: no purification, not even the initial noise.
  EXPECT_TRUE(torch::equal(purify(g, x, PurifyOptions().steps(0), gen), x));
  // Same seed, same draw.
  auto g1 = at::detail::createCPUGenerator(9), g2 = at::detail::createCPUGenerator(9);
  EXPECT_TRUE(torch::equal(purify(g, x, p, g1), purify(g, x, p, g2)));
}

TEST(purify, LogitsAverageOverDrawsAndBadOptionsNameTheValue) {
  torch::manual_seed(8);
  LinearClassifier c(torch::randn({3, 16}), torch::zeros({3}));
  GaussianEnergy g(torch::full({1, 4, 4}, 0.5f), 0.3);
  auto x = torch::rand({2, 1, 4, 4});
  auto p = PurifyOptions().steps(3).step_size(0.01).noise(0.01).init_noise(0.2).draws(4);
  auto ga = at::detail::createCPUGenerator(3), gb = at::detail::createCPUGenerator(3);
  auto z = purified_logits(c, g, x, p, ga);
  EXPECT_TRUE(torch::allclose(z, draws_one_by_one(c, g, x, p, gb), 1e-5, 1e-6));
  try {
    purify(g, x, PurifyOptions().init_noise(-0.5), ga);
    FAIL() << "negative init noise accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("-0.5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pgd(classifier_model(c), x, torch::zeros({2}, torch::kLong), PgdOptions().restarts(0)), UsageError);
}

// Noise-free chains (the shipped purifier's setting) run every draw in one
// batch; the plain oracle is the draws one after another on the same seed.
TEST(purify, BatchedDrawsEqualDrawsOneByOne) {
  torch::manual_seed(8);
  LinearClassifier c(torch::randn({3, 15}), torch::zeros({3}));
  GaussianEnergy g(torch::full({1, 3, 5}, 0.5f), 0.3);
  auto x = torch::rand({3, 1, 3, 5});  // 15 pixels: no size a random stream would line up on by luck
  auto p = PurifyOptions().steps(4).step_size(0.01).noise(0.0).init_noise(0.2).draws(5).grad_clip(0.5);
  auto ga = at::detail::createCPUGenerator(3), gb = at::detail::createCPUGenerator(3);
  const auto z = purified_logits(c, g, x, p, ga);
  const auto z1 = draws_one_by_one(c, g, x, p, gb);
  EXPECT_TRUE(torch::allclose(z, z1, 1e-6, 1e-7)) << (z - z1).abs().max();
  // Both generators have drawn the same numbers: the next draws agree.
  EXPECT_TRUE(torch::equal(torch::randn({4}, ga), torch::randn({4}, gb)));
  // The draws differ from each other (the starts are not shared).
  auto gc = at::detail::createCPUGenerator(3);
  EXPECT_FALSE(torch::allclose(purify(g, x, p.draws(1), gc), purify(g, x, p.draws(1), gc)));

  // The shipped purifier and classifier with the purifier card's settings: the
  // convolution kernels round differently at another batch size, so the
  // logits agree to float rounding carried through 10 steps, and so do the labels.
  const std::string root = std::string(EBM_SOURCE_DIR) + "/models/";
  if (!std::ifstream(root + "mnist-purifier/card.json") || !std::ifstream(root + "mnist-clf/card.json")) return;
  auto pur = load_model(root + "mnist-purifier"), clf = load_model(root + "mnist-clf");
  const auto o = purify_options_from_card(pur->card());
  ASSERT_EQ(o.noise(), 0.0);
  ASSERT_GT(o.draws(), 1);
  auto xs = torch::rand({6, 1, 28, 28});
  auto g1 = at::detail::createCPUGenerator(5), g2 = at::detail::createCPUGenerator(5);
  const auto zb = purified_logits(*clf, *pur, xs, o, g1);
  const auto zs = draws_one_by_one(*clf, *pur, xs, o, g2);
  EXPECT_TRUE(torch::allclose(zb, zs, 1e-4, 1e-4)) << (zb - zs).abs().max();
  EXPECT_TRUE(torch::equal(zb.argmax(1), zs.argmax(1)));
}

TEST(purify, OptionsFromCardOverrideDefaultsAndRejectMalformed) {
  const PurifyOptions d;
  EXPECT_EQ(purify_options_from_card(nlohmann::json::object()).steps(), d.steps());
  const nlohmann::json card = {{"purify", {{"steps", 10}, {"step_size", 0.16}, {"noise", 0.0}, {"init_noise", 0.4},
                                           {"draws", 4}, {"step_schedule", "geometric:0.015"}}}};
  const auto p = purify_options_from_card(card);
  EXPECT_EQ(p.steps(), 10);
  EXPECT_DOUBLE_EQ(p.step_size(), 0.16);
  EXPECT_DOUBLE_EQ(p.noise(), 0.0);
  EXPECT_DOUBLE_EQ(p.init_noise(), 0.4);
  EXPECT_EQ(p.draws(), 4);
  EXPECT_EQ(p.step_schedule().kind, Schedule::kGeometric);
  EXPECT_DOUBLE_EQ(p.step_schedule().end_factor, 0.015);
  EXPECT_DOUBLE_EQ(p.grad_clip(), d.grad_clip());  // absent: the default is kept
  EXPECT_EQ(purify_options_json(p)["init_noise"], 0.4);
  EXPECT_THROW(purify_options_from_card(nlohmann::json{{"purify", {{"steps", "ten"}}}}), DataError);
  // A malformed card is a data error (a file the user gave), not a usage error.
  EXPECT_THROW(purify_options_from_card(nlohmann::json{{"purify", {{"step_schedule", "bogus"}}}}), DataError);
}

}  // namespace

namespace {

TEST(DefendReport, JsonRoundTripAndWriters) {
  const nlohmann::json j = {
      {"attack", "pgd"}, {"eps", 0.3}, {"n", 16}, {"data", "mnist"}, {"split", "test"}, {"clean_accuracy", 0.9375},
      {"results", {{{"threat", "undefended"}, {"attack", "pgd"}, {"purify_steps", 0}, {"clean_accuracy", 0.9375},
                    {"robust_accuracy", 0.0}, {"max_linf", 0.3}},
                   {{"threat", "grey-box"}, {"attack", "pgd"}, {"purify_steps", 10}, {"clean_accuracy", 0.875},
                    {"robust_accuracy", 0.8125}, {"seconds", 1.5}}}},
      {"sanity_checks", {{{"name", "unbounded"}, {"threat", "grey-box"}, {"purify_steps", 10}, {"passed", false},
                          {"points", {{{"eps", 1.0}, {"robust_accuracy", 0.5}}}}, {"n", 16}}}},
      {"sanity_failed", {"unbounded (grey-box)"}},
      {"seed", 0},
      {"purifier", {{"steps", 10}}}};
  const auto r = DefendReport::from_json(j);
  ASSERT_EQ(r.rows.size(), 2u);
  EXPECT_EQ(r.rows[1].threat, "grey-box");
  EXPECT_EQ(r.rows[1].purify_steps, 10);
  EXPECT_DOUBLE_EQ(r.rows[1].robust_accuracy, 0.8125);
  EXPECT_DOUBLE_EQ(r.rows[0].extra["max_linf"].get<double>(), 0.3);
  ASSERT_EQ(r.sanity.size(), 1u);
  EXPECT_FALSE(r.sanity[0].passed);
  EXPECT_EQ(r.sanity_failed(), (std::vector<std::string>{"unbounded (grey-box)"}));
  EXPECT_EQ(r.details["purifier"]["steps"], 10);
  // The round trip is exact: every field comes back, typed or in extra/details.
  EXPECT_EQ(r.to_json(), j);
  const auto text = r.to_text();
  EXPECT_NE(text.find("mnist, attack pgd eps 0.3, n = 16, clean accuracy 0.9375"), std::string::npos) << text;
  EXPECT_NE(text.find("grey-box    pgd                 10          0.8750           0.8125"), std::string::npos) << text;
  EXPECT_NE(text.find("FAILED"), std::string::npos);
  EXPECT_NE(r.to_markdown().find("| grey-box | pgd | 10 | 0.8750 | 0.8125 |"), std::string::npos);
  // cw has no eps: null in JSON, absent from the heading.
  auto cw = j;
  cw["attack"] = "cw";
  cw["eps"] = nullptr;
  const auto rc = DefendReport::from_json(cw);
  EXPECT_TRUE(std::isnan(rc.eps));
  EXPECT_TRUE(rc.to_json()["eps"].is_null());
  const auto first_line = rc.to_text().substr(0, rc.to_text().find('\n'));
  EXPECT_EQ(first_line, "mnist, attack cw, n = 16, clean accuracy 0.9375");
  EXPECT_THROW(DefendReport::from_json(nlohmann::json{{"attack", "pgd"}}), DataError);
}

}  // namespace
