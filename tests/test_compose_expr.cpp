// Composition: the expression language (expr.h) on its own, and expressions
// turned into energies and truth values (attributes.h) checked against the
// energy algebra written out by hand on small linear classifiers.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include "scratch_dir.h"
#include "ebm/compose/attributes.h"
#include "ebm/core/common.h"
#include "ebm/core/compose.h"
#include "ebm/core/expr.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"

using namespace ebm;

namespace {

std::string error_of(const std::string& text) {
  try {
    parse_expr(text);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ComposeExpr, PrecedenceNotBindsTightestThenAndThenOr) {
  EXPECT_EQ(parse_expr("digit=3 & thick").str(), "(digit=3 & thick)");
  EXPECT_EQ(parse_expr("a | b & c").str(), "(a | (b & c))");
  EXPECT_EQ(parse_expr("(a | b) & c").str(), "((a | b) & c)");
  EXPECT_EQ(parse_expr("!a & b").str(), "(!a & b)");
  EXPECT_EQ(parse_expr("!(a & b)").str(), "!(a & b)");
  EXPECT_EQ(parse_expr("0.5*thick & digit=7").str(), "(0.5*thick & digit=7)");
  EXPECT_EQ(parse_expr("  2 * ( a|b )").str(), "2*(a | b)");
  EXPECT_EQ(parse_expr("a&b&c").kids.size(), 3u);  // flat, not nested
  // A digit value may start an atom without being taken for a weight.
  EXPECT_EQ(parse_expr("3 | digit=8").str(), "(3 | digit=8)");
  EXPECT_EQ(parse_expr("model:models/x & thin").kids[0].atom, "model:models/x");
  EXPECT_DOUBLE_EQ(parse_expr("-1.5*a").weight, -1.5);
}

TEST(ComposeExpr, ErrorsNameTheColumn) {
  EXPECT_NE(error_of("digit=3 & ").find("expected attribute value at column 11"), std::string::npos) << error_of("digit=3 & ");
  EXPECT_NE(error_of("digit=3 & =").find("expected attribute value at column 11"), std::string::npos);
  EXPECT_NE(error_of("digit=").find("expected attribute value at column 7"), std::string::npos);
  EXPECT_NE(error_of("(a | b").find("expected ')' at column 7"), std::string::npos) << error_of("(a | b");
  EXPECT_NE(error_of("a b").find("unexpected 'b'; expected '&', '|' or the end at column 3"), std::string::npos)
      << error_of("a b");
  EXPECT_NE(error_of("").find("empty expression"), std::string::npos);
  EXPECT_NE(error_of("a & model:").find("model path"), std::string::npos);
}

TEST(ComposeExpr, AtomsCarryPolarity) {
  std::vector<std::pair<std::string, bool>> atoms;
  parse_expr("digit=3 & !(thick | 2*thin)").atoms(atoms);
  ASSERT_EQ(atoms.size(), 3u);
  EXPECT_EQ(atoms[0], std::make_pair(std::string("digit=3"), true));
  EXPECT_EQ(atoms[1], std::make_pair(std::string("thick"), false));
  EXPECT_EQ(atoms[2], std::make_pair(std::string("thin"), false));
}

namespace {

// Two tiny attribute "models" saved as native folders: digit (10 classes) and
// thickness (3 classes), conv classifiers with random weights.
struct TinyAttrs {
  std::string dir, digit, thick;
  TinyAttrs() {
    dir = ebm::test::scratch_dir("ebm_test_compose", "", true);
    digit = dir + "/digit";
    thick = dir + "/thick";
    torch::manual_seed(5);
    NativeModel d(json{{"type", "conv-classifier"}, {"width", 4}, {"num_classes", 10}});
    d.set_card({{"attribute", {{"attribute", "digit"}, {"classes", {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}}}},
                {"class_energy", "nll"},
                {"calibration", {{"temperature", 2.0}}}});
    save_model(digit, d);
    NativeModel t(json{{"type", "conv-classifier"}, {"width", 4}, {"num_classes", 3}});
    t.set_card({{"attribute", {{"attribute", "thickness"}, {"classes", {"thin", "medium", "thick"}},
                               {"tercile_boundaries", {2.6, 3.4}}}},
                {"class_energy", "nll"}});
    save_model(thick, t);
  }
};

}  // namespace

TEST(ComposeEnergy, ExpressionsMatchTheAlgebraWrittenByHand) {
  TinyAttrs m;
  AttributeSet attrs({m.digit, m.thick});
  EXPECT_EQ(attrs.available(), "digit=0|1|2|3|4|5|6|7|8|9, thickness=thin|medium|thick");
  auto x = torch::rand({5, 1, 28, 28});
  auto D = load_model(m.digit), T = load_model(m.thick);
  torch::NoGradGuard ng;
  const auto ld = torch::log_softmax(D->logits(x) / 2.0, 1);  // calibrated T = 2 from the card
  const auto lt = torch::log_softmax(T->logits(x), 1);        // uncalibrated: T = 1
  // guidance 1: the analytic -log p atoms, unscaled.
  auto energy = [&](const std::string& s, ComposeOptions o = ComposeOptions().guidance(1)) {
    return build_energy(parse_expr(s), attrs, o, nullptr)->energy(x);
  };
  const double tol = 1e-5;
  EXPECT_TRUE(torch::allclose(energy("digit=3"), -ld.select(1, 3), tol, tol));
  EXPECT_TRUE(torch::allclose(energy("digit=3 & thick"), -ld.select(1, 3) - lt.select(1, 2), tol, tol));
  EXPECT_TRUE(torch::allclose(energy("digit=3 & !thick", ComposeOptions().guidance(1).not_weight(0.25)),
                              -ld.select(1, 3) + 0.25 * lt.select(1, 2), tol, tol));
  EXPECT_TRUE(torch::allclose(energy("0.5*thin & digit=1"), -0.5 * lt.select(1, 0) - ld.select(1, 1), tol, tol));
  // OR at s = 1 is exactly -log(p(3|x) + p(8|x)).
  EXPECT_TRUE(torch::allclose(energy("digit=3 | digit=8"),
                              -torch::log(ld.select(1, 3).exp() + ld.select(1, 8).exp()), tol, tol));
  // A prior is added once, with its weight.
  GaussianEnergy g(torch::full({1, 28, 28}, 0.5f), 1.0);
  auto prior = std::make_shared<GaussianEnergy>(g);
  const auto with_prior = build_energy(parse_expr("thin"), attrs, ComposeOptions().guidance(1).prior_weight(3), prior)->energy(x);
  EXPECT_TRUE(torch::allclose(with_prior, 3 * g.energy(x) - lt.select(1, 0), tol, tol));

  // Resolution errors list what exists.
  auto err = [&](const std::string& s) {
    try {
      build_energy(parse_expr(s), attrs, {}, nullptr);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err("colour=red").find("unknown attribute 'colour' (available: digit=0|1"), std::string::npos);
  EXPECT_NE(err("digit=12").find("has no value '12'"), std::string::npos);
  EXPECT_NE(err("digit").find("needs a value"), std::string::npos);
  EXPECT_NE(err("bold").find("unknown attribute value 'bold'"), std::string::npos);
}

TEST(ComposeJudge, TruthFollowsTheFormulaAndNegatedTermsCountWhenAbsent) {
  TinyAttrs m;
  AttributeSet attrs({m.digit, m.thick});
  Judgement j;
  j.digit = torch::tensor({3, 3, 8, 1}, torch::kInt64);
  j.confidence = torch::ones({4});
  j.thick_class = torch::tensor({2, 0, 2, 1}, torch::kInt64);
  j.thickness = torch::tensor({4.0, 2.0, 4.0, 3.0});
  auto truth = [&](const std::string& s) { return satisfies(parse_expr(s), attrs, j).to(torch::kInt64); };
  EXPECT_TRUE(torch::equal(truth("digit=3 & thick"), torch::tensor({1, 0, 0, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(truth("digit=3 & !thick"), torch::tensor({0, 1, 0, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(truth("digit=3 | digit=8"), torch::tensor({1, 1, 1, 0}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(truth("0.5*medium"), torch::tensor({0, 0, 0, 1}, torch::kInt64)));
  // The report: per-term rates, negated terms as the share WITHOUT the attribute.
  EXPECT_NEAR(mean_pairwise_l2(torch::tensor({{0.0, 0.0}, {3.0, 4.0}})), 5.0, 1e-12);
  // Brute force: the mean over all ordered pairs i != j.
  auto pts = torch::rand({6, 3}, torch::kFloat64);
  double sum = 0;
  for (int a = 0; a < 6; ++a)
    for (int b = 0; b < 6; ++b)
      if (a != b) sum += (pts[a] - pts[b]).norm().item<double>();
  EXPECT_NEAR(mean_pairwise_l2(pts), sum / 30, 1e-9);
}

TEST(ComposeSample, RestartsKeepTheLowestEnergyChain) {
  // A Gaussian energy: every chain drifts toward the mean; with restarts the kept
  // chain of each sample has the lowest energy of its R candidates.
  GaussianEnergy g(torch::full({1, 28, 28}, 0.3f), 0.2);
  auto o = ComposeSampleOptions().restarts(3).seed(4).batch(4);
  o.langevin().steps(5).step_size(0.01).noise(0.01);
  const auto one = compose_sample(g, 4, ComposeSampleOptions().restarts(1).seed(4).batch(4).langevin(o.langevin()));
  const auto best = compose_sample(g, 4, o);
  EXPECT_EQ(best.x.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
  EXPECT_TRUE(torch::allclose(best.energy, g.energy(best.x), 1e-4, 1e-3));
  // The first batch of chains is the same as the single-chain run, so the best can only be lower.
  EXPECT_TRUE(best.energy.le(one.energy + 1e-6).all().item<bool>());
}

TEST(ComposeSample, SelectEnergyPicksAmongRestarts) {
  // Sample one Gaussian, select by another: the kept chain minimises the
  // selection energy (brute force over the R candidates, rebuilt per restart
  // from the single-chain runs with the same seed), not the sampled one.
  GaussianEnergy g(torch::full({1, 28, 28}, 0.3f), 0.2);
  auto sel = std::make_shared<GaussianEnergy>(torch::full({1, 28, 28}, 0.9f), 0.2);
  LangevinOptions lo;
  lo.steps(3).step_size(0.01).noise(0.05);
  const int64_t n = 4, r = 3;
  // batch = n, so batch k of the restart run is chain set k.
  const auto picked = compose_sample(g, n, ComposeSampleOptions().restarts(r).seed(9).batch(n).langevin(lo).select_energy(sel));
  const auto all = compose_sample(g, n * r, ComposeSampleOptions().restarts(1).seed(9).batch(n).langevin(lo));
  const auto cand = sel->energy(all.x).detach().view({r, n});
  EXPECT_TRUE(torch::allclose(picked.select, std::get<0>(cand.min(0)), 1e-5, 1e-4));
  EXPECT_TRUE(torch::allclose(picked.select, sel->energy(picked.x).detach(), 1e-5, 1e-4));
  EXPECT_TRUE(torch::allclose(picked.energy, g.energy(picked.x).detach(), 1e-4, 1e-3));
}
