// Trainer tests: losses against hand values and finite differences, the
// replay buffer, outlier synthesis, the thickness measure, a smoke run of
// every task, divergence handling, and bit-exact resume.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>

#include "scratch_dir.h"
#include "ebm/core/annealed.h"
#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/core/models.h"
#include "ebm/compose/morphology.h"
#include "ebm/train/evaluate.h"
#include "ebm/train/train.h"
#include "test_util.h"

using namespace ebm;

namespace {
using ebm::test::have_mnist;


std::string train_dir(const std::string& name) { return ebm::test::scratch_dir("ebm_train_", name, false); }

// E(x) = 0.5*||x - mu||^2 with a learnable scalar mu: a loss oracle.
class ShiftEnergy : public Energy {
 public:
  torch::Tensor mu = torch::tensor(0.3, torch::dtype(torch::kFloat64).requires_grad(true));
  torch::Tensor energy(const torch::Tensor& x) override { return 0.5 * (x - mu).pow(2).flatten(1).sum(1); }
  std::string describe() const override { return "shift"; }
};

TrainOptions tiny(const std::string& task, const std::string& out) {
  return TrainOptions()
      .task(task)
      .data("mnist")
      .out(out)
      .arch({{"type", task == "ebm" || task == "dsm" ? "conv-ebm" : "conv-classifier"}, {"width", 4}})
      .steps(6)
      .batch(8)
      .sgld_steps(2)
      .buffer_size(50)
      .checkpoint_every(3)
      .eval_n(40)
      .seed(11);
}

std::vector<torch::Tensor> weights(const std::string& dir) {
  auto m = std::dynamic_pointer_cast<NativeModel>(load_model(dir));
  return m->parameters();
}

}  // namespace

TEST(Losses, PcdHandValue) {
  auto ep = torch::tensor({1.0, 3.0}), en = torch::tensor({2.0, 4.0, 6.0});
  // mean(E+) = 2, mean(E-) = 4, mean(E+^2) = 5, mean(E-^2) = 56/3
  const double want = 2 - 4 + 0.1 * (5 + 56.0 / 3);
  EXPECT_NEAR(pcd_loss(ep, en, 0.1).item<double>(), want, 1e-6);
}

TEST(Losses, EnergyBoundHandValue) {
  auto ein = torch::tensor({-30.0, -20.0}), eout = torch::tensor({-10.0, -2.0});
  // m_in = -25: relu(-5)=0, relu(5)=5 -> mean(0,25) = 12.5
  // m_out = -5: relu(5)=5, relu(-3)=0 -> mean(25,0) = 12.5
  EXPECT_NEAR(energy_bound_loss(ein, eout, -25, -5).item<double>(), 25.0, 1e-9);
}

TEST(Losses, DsmMatchesAnalyticAndFiniteDifference) {
  ShiftEnergy e;
  auto x = torch::rand({3, 1, 2, 2}, torch::kFloat64);
  auto eps = torch::randn({3, 1, 2, 2}, torch::kFloat64);
  auto sig = torch::tensor({0.1, 0.2, 0.5}, torch::kFloat64);
  // grad E(x~) = x~ - mu, so the loss is closed-form.
  auto xt = x + sig.view({-1, 1, 1, 1}) * eps;
  auto want = (0.5 * (sig.view({-1, 1, 1, 1}) * (xt - 0.3) - eps).pow(2).flatten(1).sum(1)).mean();
  auto loss = dsm_loss(e, x, sig, eps);
  EXPECT_NEAR(loss.item<double>(), want.item<double>(), 1e-12);
  // d loss / d mu by autograd vs central differences.
  auto g = torch::autograd::grad({loss}, {e.mu})[0].item<double>();
  const double h = 1e-6;
  auto at = [&](double m) {
    ShiftEnergy f;
    f.mu = torch::tensor(m, torch::kFloat64);
    return dsm_loss(f, x, sig, eps).item<double>();
  };
  EXPECT_NEAR(g, (at(0.3 + h) - at(0.3 - h)) / (2 * h), 1e-6);
  // Clipped variant: x~ = clamp(x + sigma*eps, 0, 1), target (x~ - x)/sigma.
  auto xc = (x + sig.view({-1, 1, 1, 1}) * eps).clamp(0, 1);
  auto tgt = (xc - x) / sig.view({-1, 1, 1, 1});
  auto want_c = (0.5 * (sig.view({-1, 1, 1, 1}) * (xc - 0.3) - tgt).pow(2).flatten(1).sum(1)).mean();
  EXPECT_NEAR(dsm_loss(e, x, sig, eps, /*clip=*/true).item<double>(), want_c.item<double>(), 1e-12);
}

TEST(Losses, DsmIsZeroForTheExactNoiseConditionalEnergy) {
  // Data: a point mass at mu. Blurred by sigma it is N(mu, sigma^2 I), whose
  // energy E(x, sigma) = |x - mu|^2 / (2 sigma^2) has sigma * grad E(x~) = eps
  // exactly, at every sigma of the batch. dsm_loss must ask for each image's
  // level: a sigma-blind energy, right at one sigma only, is not zero.
  const auto mu = torch::full({1, 3, 3}, 0.4, torch::kFloat64);
  GaussianNoiseConditional exact(mu, 0.0);
  auto x = mu.expand({4, 1, 3, 3}).clone();
  auto eps = torch::randn({4, 1, 3, 3}, torch::kFloat64);
  auto sig = torch::tensor({0.01, 0.1, 0.5, 1.0}, torch::kFloat64);
  EXPECT_NEAR(dsm_loss(exact, x, sig, eps).item<double>(), 0.0, 1e-12);
  GaussianEnergy blind(mu, 0.1);
  EXPECT_GT(dsm_loss(blind, x, sig, eps).item<double>(), 1.0);
}

TEST(Models, NoiseConditionalEnergies) {
  for (const char* type : {"conv-ebm-nc", "unet-ebm-nc"}) {
    SCOPED_TRACE(type);
    at::manual_seed(4);
    NativeModel m({{"type", type}, {"width", 4}, {"sigma_min", 0.02}});
    EXPECT_TRUE(m.noise_conditional());
    EXPECT_EQ(m.num_classes(), 0);
    auto x = torch::rand({3, 1, 28, 28});
    const auto e_min = m.energy_at(x, torch::full({3}, 0.02));
    EXPECT_TRUE(torch::allclose(m.energy(x), e_min));  // energy(x) is the energy at sigma_min
    // The level is an input: each row is scored at its own sigma.
    const auto mixed = m.energy_at(x, torch::tensor({0.02f, 0.5f, 1.0f}));
    EXPECT_FLOAT_EQ(mixed[0].item<float>(), e_min[0].item<float>());
    EXPECT_NE(mixed[1].item<float>(), m.energy_at(x, torch::full({3}, 0.02))[1].item<float>());
    EXPECT_THROW(m.energy_at(x, torch::full({2}, 0.1)), c10::Error);  // sigma must be [B]
    EXPECT_THROW(NativeModel({{"type", type}, {"sigma_min", -1}}), DataError);
    EXPECT_THROW(NativeModel({{"type", type}, {"sigma_min", "small"}}), DataError);
  }
  // The U-Net energy is |x - D(x, sigma)|^2 / (2 sigma^2) of its denoiser.
  UNetEnergy u(NoiseConditionalEBMOptions().width(4));
  auto x = torch::rand({2, 1, 28, 28});
  auto sig = torch::tensor({0.1f, 0.7f});
  const auto want = (x - u->denoise(x, sig)).pow(2).flatten(1).sum(1) / (2 * sig.pow(2));
  EXPECT_TRUE(torch::allclose(u->forward(x, sig), want));
  // A plain conv-ebm is sigma-blind.
  NativeModel plain({{"type", "conv-ebm"}, {"width", 4}});
  EXPECT_FALSE(plain.noise_conditional());
  EXPECT_TRUE(plain.energy_at(x, torch::full({2}, 0.3)).equal(plain.energy(x)));
}

TEST(ReplayBuffer, ReinitFractionHonoured) {
  auto gen = at::detail::createCPUGenerator(3);
  ReplayBuffer buf(100, {1, 4, 4}, gen);
  buf.data().fill_(2.0);  // marker: anything < 2 was freshly drawn from U(0,1)
  torch::Tensor idx;
  const int64_t n = 20000;
  auto x = buf.sample(n, 0.05, gen, &idx);
  const double frac = (x.flatten(1).select(1, 0) < 2.0).to(torch::kFloat64).mean().item<double>();
  // Binomial(20000, 0.05): sd = sqrt(0.05*0.95/20000) = 0.00154; allow 4 sd.
  EXPECT_NEAR(frac, 0.05, 4 * 0.00154);
  buf.update(idx.narrow(0, 0, 5), torch::zeros({5, 1, 4, 4}));
  EXPECT_EQ(buf.data().index_select(0, idx.narrow(0, 0, 5)).abs().sum().item<double>(), 0.0);
}

// Informative starts: samples of the fitted per-class Gaussian reproduce each
// class's mean and covariance (brute force on the same data), in proportion to
// the class sizes. Pixels are kept well inside (0,1) so clipping is negligible.
TEST(ReplayBuffer, GaussianStartsMatchClassMoments) {
  auto g = at::detail::createCPUGenerator(11);
  const int64_t n0 = 300, n1 = 100;
  auto a = 0.3 + 0.05 * torch::randn({n0, 1, 2, 2}, g);
  auto b = 0.7 + 0.05 * torch::randn({n1, 1, 2, 2}, g);
  b.select(3, 1).copy_(b.select(3, 0) * 0.5 + 0.35);  // correlated pixels in class 1
  auto images = torch::cat({a, b});
  auto labels = torch::cat({torch::zeros({n0}, torch::kInt64), torch::ones({n1}, torch::kInt64)});
  auto starts = gaussian_starts(images, labels, /*ridge=*/1e-6);
  auto x = starts(40000, g);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{40000, 1, 2, 2}));
  auto hi = x.flatten(1).mean(1) > 0.5;  // which component drew it
  EXPECT_NEAR(hi.to(torch::kFloat64).mean().item<double>(), 0.25, 0.01);
  auto xs = x.flatten(1).index_select(0, hi.nonzero().flatten()).to(torch::kFloat64);
  auto want = b.flatten(1).to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(xs.mean(0), want.mean(0), 0, 3e-3)) << xs.mean(0) << want.mean(0);
  auto cov = [](const torch::Tensor& m) {
    auto z = m - m.mean(0);
    return z.t().mm(z) / double(m.size(0) - 1);
  };
  EXPECT_TRUE(torch::allclose(cov(xs), cov(want), 0, 2e-4)) << cov(xs) << cov(want);
  // The buffer uses them for its fill and for every re-init.
  ReplayBuffer buf(50, {1, 2, 2}, g, starts);
  EXPECT_GT(buf.data().min().item<double>(), 0.05);
  EXPECT_THROW(gaussian_starts(images.narrow(0, 0, 1), torch::Tensor()), c10::Error);
}

TEST(Outliers, ShapeRangeAndDeterminism) {
  auto x = torch::rand({32, 1, 28, 28});
  auto g1 = at::detail::createCPUGenerator(5), g2 = at::detail::createCPUGenerator(5);
  auto a = synthesize_outliers(x, g1), b = synthesize_outliers(x, g2);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_GE(a.min().item<float>(), 0.f);
  EXPECT_LE(a.max().item<float>(), 1.f);
  EXPECT_FALSE(torch::allclose(a, x));
  // One kind at a time, against its definition.
  auto g3 = at::detail::createCPUGenerator(6);
  EXPECT_TRUE(torch::allclose(synthesize_outliers(x, g3, {"invert"}), 1 - x));
  auto g4 = at::detail::createCPUGenerator(6);
  const auto ps = synthesize_outliers(x, g4, {"pixel-shuffle"});
  EXPECT_TRUE(torch::equal(std::get<0>(ps.flatten(1).sort(1)), std::get<0>(x.flatten(1).sort(1))));
  // The default leaves out the test sets' generators; the card names those a choice includes.
  EXPECT_TRUE(outlier_test_sets(TrainOptions().outliers()).empty());
  EXPECT_EQ(outlier_test_sets(outlier_kinds()), (std::vector<std::string>{"uniform", "invert:*", "vflip:*"}));
  EXPECT_THROW(synthesize_outliers(x, g4, {"rotate"}), UsageError);
  EXPECT_THROW(synthesize_outliers(x, g4, {}), UsageError);
}

// draw_polyline against a brute-force distance to the segment, pixel by pixel.
TEST(Outliers, PolylineMatchesBruteForceDistance) {
  const auto pts = torch::tensor({{5.0, 4.0}, {20.0, 9.0}, {12.5, 23.0}}, torch::kFloat64);
  const double r = 1.3, v = 0.8;
  const auto img = draw_polyline(pts, r, v, 28, 28);
  auto seg_dist = [](double py, double px, double ay, double ax, double by, double bx) {
    const double vy = by - ay, vx = bx - ax;
    double t = ((py - ay) * vy + (px - ax) * vx) / (vy * vy + vx * vx);
    t = std::min(1.0, std::max(0.0, t));
    return std::hypot(py - (ay + t * vy), px - (ax + t * vx));
  };
  double worst = 0;
  for (int i = 0; i < 28; ++i)
    for (int j = 0; j < 28; ++j) {
      const double d = std::min(seg_dist(i, j, 5, 4, 20, 9), seg_dist(i, j, 20, 9, 12.5, 23));
      const double want = v * std::min(1.0, std::max(0.0, r + 0.5 - d));
      worst = std::max(worst, std::abs(img[i][j].item<double>() - want));
    }
  EXPECT_LT(worst, 1e-6);
  EXPECT_FLOAT_EQ(img[5][4].item<float>(), float(v));  // on the line: full intensity
  EXPECT_EQ(img[0][27].item<float>(), 0.f);            // far away: black
}

TEST(Outliers, StrokesAndShapes) {
  auto g1 = at::detail::createCPUGenerator(9), g2 = at::detail::createCPUGenerator(9);
  for (const char* kind : {"strokes", "shapes", "lines"}) {
    const auto x = torch::rand({16, 1, 28, 28});
    const auto a = synthesize_outliers(x, g1, {kind}), b = synthesize_outliers(x, g2, {kind});
    EXPECT_TRUE(torch::equal(a, b)) << kind;  // same seed, same images
    EXPECT_GE(a.min().item<float>(), 0.f) << kind;
    EXPECT_LE(a.max().item<float>(), 1.f) << kind;
    // Drawn on black, independent of x: some ink, never the whole frame.
    const auto ink = (a > 0.05).to(torch::kFloat32).flatten(1).mean(1);
    EXPECT_GT(ink.min().item<float>(), 0.005f) << kind;
    EXPECT_LT(ink.max().item<float>(), 0.9f) << kind;
  }
  // None of these kinds names a test set.
  EXPECT_TRUE(outlier_test_sets({"strokes", "shapes", "lines"}).empty());
}

// flip: each row is one of the four turns of its own image, never one that
// leaves it nearly unchanged; a symmetric image falls back to strokes.
TEST(Outliers, FlipTurnsTheImageAndSkipsSymmetricOnes) {
  auto g = at::detail::createCPUGenerator(11);
  auto x = torch::zeros({8, 1, 28, 28});
  for (int64_t i = 0; i < 8; ++i) x[i][0].narrow(0, 4 + i, 3).narrow(1, 6, 10 + i).fill_(1.0);  // bars off-centre
  x[7].zero_();
  x[7][0].narrow(0, 10, 8).narrow(1, 10, 8).fill_(1.0);  // a centred square: every turn maps it nearly to itself
  const auto o = synthesize_outliers(x, g, {"flip"});
  for (int64_t i = 0; i < 7; ++i) {
    const auto xi = x[i];
    const std::vector<torch::Tensor> turns = {xi.flip({2}), xi.flip({1}), xi.transpose(1, 2).flip({2}),
                                              xi.transpose(1, 2).flip({1})};
    bool match = false;
    for (const auto& t : turns) match = match || torch::equal(o[i], t);
    EXPECT_TRUE(match) << "row " << i;
    EXPECT_GE((o[i] - xi).norm().item<double>(), kFlipMinChange * xi.norm().item<double>()) << "row " << i;
  }
  // The square's turns are all within 0.5 of its norm, so it became strokes.
  for (const auto& t : {x[7].flip({2}), x[7].flip({1})}) EXPECT_FALSE(torch::equal(o[7], t));
  EXPECT_EQ(outlier_test_sets({"flip"}), (std::vector<std::string>{"vflip:*"}));
}

// splice: every row is one side of its own image joined, along rows or
// columns through the middle third, to the other side of a different row.
TEST(Outliers, SpliceJoinsTwoImagesOfTheBatch) {
  auto a = torch::rand({1, 6, 5}), b = torch::rand({1, 6, 5});
  const auto s = splice_outlier(a, b, 1, 2);  // brute force, pixel by pixel
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 5; ++c) EXPECT_EQ(s[0][r][c].item<float>(), (r < 2 ? a : b)[0][r][c].item<float>());
  EXPECT_TRUE(torch::equal(splice_outlier(a, b, 2, 3).narrow(2, 3, 2), b.narrow(2, 3, 2)));
  EXPECT_THROW(splice_outlier(a, b, 1, 0), c10::Error);
  EXPECT_THROW(splice_outlier(a, b, 2, 5), c10::Error);
  EXPECT_THROW(splice_outlier(a, b, 0, 1), c10::Error);
  // Rows of distinct constants, so each output pixel tells which row it came from.
  auto x = torch::arange(1, 9, torch::kFloat32).div(8).view({8, 1, 1, 1}).expand({8, 1, 28, 28}).contiguous();
  auto g = at::detail::createCPUGenerator(12);
  const auto o = synthesize_outliers(x, g, {"splice"});
  for (int64_t i = 0; i < 8; ++i) {
    const float own = x[i][0][0][0].item<float>();
    const auto mine = (o[i] == own).to(torch::kFloat32).mean().item<double>();
    EXPECT_GE(mine, 9.0 / 28 - 1e-6) << "row " << i;        // at least a third is its own
    EXPECT_LE(mine, 1 - 9.0 / 28 + 1e-6) << "row " << i;    // and at least a third is not
    const auto other = o[i].flatten().masked_select(o[i].flatten() != own);
    EXPECT_EQ(std::get<0>(at::_unique(other)).numel(), 1) << "row " << i;  // one other image
  }
  EXPECT_TRUE(outlier_test_sets({"splice", "smooth"}).empty());
}

// smooth: never flat (max - min >= kSmoothMinRange), inside [0,1], and smooth:
// neighbouring pixels differ by at most the grid's largest step over one cell.
TEST(Outliers, SmoothFieldsAreNeverFlat) {
  auto g1 = at::detail::createCPUGenerator(13), g2 = at::detail::createCPUGenerator(13);
  const auto a = draw_smooth(64, 28, 28, g1), b = draw_smooth(64, 28, 28, g2);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_GE(a.min().item<float>(), 0.f);
  EXPECT_LE(a.max().item<float>(), 1.f);
  const auto range = a.flatten(1).amax(1) - a.flatten(1).amin(1);
  EXPECT_GE(range.min().item<float>(), kSmoothMinRange - 1e-5);
  // A 5x5 grid, the finest, has cells of 27/4 pixel steps: a step changes the
  // field by at most 4/27 of the grid's range, and the stretch to [0,1] divides
  // by a field range of at least (1 - 4/27) of it, so every step is below 0.2.
  const auto dy = (a.narrow(2, 1, 27) - a.narrow(2, 0, 27)).abs().max().item<float>();
  const auto dx = (a.narrow(3, 1, 27) - a.narrow(3, 0, 27)).abs().max().item<float>();
  EXPECT_LT(std::max(dy, dx), 0.2f);
  EXPECT_GT(std::max(dy, dx), 0.02f);  // and not flat either
}

TEST(Thickness, SyntheticBarsOfKnownWidth) {
  for (int w : {1, 3, 5, 7}) {
    auto img = torch::zeros({1, 1, 28, 28});
    img.narrow(2, 14 - w / 2, w).narrow(3, 4, 20).fill_(1.0);  // horizontal bar, w rows
    EXPECT_NEAR(stroke_thickness(img)[0].item<float>(), w, 0.35) << "horizontal width " << w;
    auto v = img.transpose(2, 3).contiguous();
    EXPECT_NEAR(stroke_thickness(v)[0].item<float>(), w, 0.35) << "vertical width " << w;
  }
  EXPECT_EQ(stroke_thickness(torch::zeros({1, 1, 28, 28}))[0].item<float>(), 0.f);
  // Monotone: a thicker stroke of the same shape measures thicker.
  auto thin = torch::zeros({1, 1, 28, 28}), thick = torch::zeros({1, 1, 28, 28});
  thin.narrow(2, 13, 2).narrow(3, 4, 20).fill_(1);
  thick.narrow(2, 12, 4).narrow(3, 4, 20).fill_(1);
  EXPECT_LT(stroke_thickness(thin)[0].item<float>(), stroke_thickness(thick)[0].item<float>());
}

TEST(Train, RejectsBadOptions) {
  EXPECT_THROW(train(TrainOptions().task("nope").out("/tmp/x")), UsageError);
  EXPECT_THROW(train(TrainOptions().task("ebm").out("")), UsageError);
  EXPECT_THROW(train(TrainOptions().task("ebm").out("/tmp/x").steps(0)), UsageError);
  EXPECT_THROW(train(TrainOptions().task("energy-finetune").out("/tmp/x")), UsageError);
  // A warm start applies to classifier tasks and dsm only.
  EXPECT_THROW(train(TrainOptions().task("ebm").out("/tmp/x").init("models/mnist-dsm")), UsageError);
}

TEST(Train, SmokeEveryTask) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string clf = train_dir("clf");
  const std::string dsm = train_dir("dsm");
  for (std::string task : {"clf", "ebm", "jem", "dsm"}) {
    const std::string out = task == "clf" ? clf : task == "dsm" ? dsm : train_dir(task);
    auto r = train(tiny(task, out));
    EXPECT_EQ(r.steps, 6) << task;
    EXPECT_EQ(r.card["task"], task);
    // End-of-run metrics are on the val split; training never reports test figures.
    EXPECT_TRUE(r.card["metrics"].contains("mean_energy_val")) << task;
    EXPECT_FALSE(r.card["metrics"].contains("mean_energy_test")) << task;
    EXPECT_NO_THROW(load_model(out)) << task;
  }
  auto att = train(tiny("attribute", train_dir("att")).attribute("thickness"));
  EXPECT_EQ(att.card["attribute"]["classes"].size(), 3u);
  auto ft = train(tiny("energy-finetune", train_dir("ft")).init(clf).arch(nullptr));
  EXPECT_TRUE(ft.card["options"].contains("m_in"));
  EXPECT_TRUE(ft.card["metrics"].contains("val_accuracy"));
  // JEM warm-started from the classifier: starts from its weights, records it.
  const std::string warm_dir = train_dir("jem-warm");
  auto warm = train(tiny("jem", warm_dir).init(clf).arch(nullptr));
  EXPECT_EQ(warm.card["options"]["init"], clf);
  EXPECT_EQ(load_card(warm_dir)["arch"], load_card(clf)["arch"]);
  // A DSM warm-started from the tiny DSM keeps its architecture; a
  // classifier is no DSM warm start.
  const std::string dsm_warm = train_dir("dsm-warm");
  auto dw = train(tiny("dsm", dsm_warm).init(dsm).arch(nullptr));
  EXPECT_EQ(dw.card["options"]["init"], dsm);
  EXPECT_EQ(load_card(dsm_warm)["arch"], load_card(dsm)["arch"]);
  EXPECT_THROW(train(tiny("dsm", train_dir("dsm-from-clf")).init(clf).arch(nullptr)), UsageError);
  // A noise-conditional DSM: its card names the smallest trained sigma, the
  // level energy(x) uses; only --task dsm trains one.
  const std::string nc = train_dir("dsm-nc");
  auto ncr = train(tiny("dsm", nc).arch(nullptr).arch_type("conv-ebm-nc").width(4).dsm_sigmas({0.05, 0.5, 1.0}));
  EXPECT_EQ(load_card(nc)["arch"]["type"], "conv-ebm-nc");
  EXPECT_DOUBLE_EQ(load_card(nc)["arch"]["sigma_min"].get<double>(), 0.05);
  EXPECT_TRUE(load_model(nc)->noise_conditional());
  EXPECT_TRUE(ncr.card["metrics"].contains("tweedie_psnr_sigma_0.50"));
  EXPECT_THROW(train(tiny("clf", train_dir("clf-nc")).arch(nullptr).arch_type("conv-ebm-nc").width(4)), UsageError);
  // Purification augmentation with the tiny DSM as purifier (card without a
  // "purify" entry: the PurifyOptions defaults, 50 steps).
  auto pa = train(tiny("clf", train_dir("clf-pa")).purify_augment(dsm).purify_fraction(0.5));
  EXPECT_EQ(pa.card["options"]["purify_augment"], dsm);
  EXPECT_EQ(pa.card["options"]["purify_steps"], 50);
  EXPECT_THROW(train(tiny("dsm", train_dir("dsm-pa")).purify_augment(dsm)), UsageError);
  // Adversarial purification training and plain adversarial training record
  // their settings; bad values and wrong tasks are refused.
  auto pat = train(tiny("clf", train_dir("clf-pat")).purify_augment(dsm).purify_attack_eps(0.3).purify_attack_steps(2));
  EXPECT_EQ(pat.card["options"]["purify_attack_eps"], 0.3);
  EXPECT_EQ(pat.card["options"]["purify_attack_steps"], 2);
  EXPECT_THROW(train(tiny("clf", train_dir("clf-pat2")).purify_attack_eps(0.3)), UsageError);  // no purifier
  auto adv = train(tiny("attribute", train_dir("att-adv")).init(clf).arch(nullptr).adv_eps(0.1).adv_steps(2));
  EXPECT_EQ(adv.card["options"]["adv_eps"], 0.1);
  EXPECT_EQ(adv.card["options"]["init"], clf);
  EXPECT_THROW(train(tiny("dsm", train_dir("dsm-adv")).adv_eps(0.1)), UsageError);
  EXPECT_THROW(train(tiny("clf", train_dir("clf-adv")).adv_eps(1.5)), UsageError);
  EXPECT_THROW(train(tiny("clf", train_dir("clf-adv")).adv_eps(0.1).adv_steps(0)), UsageError);
}

TEST(Train, DivergenceBeforeFirstCheckpointSavesNothing) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string out = train_dir("div");
  EXPECT_THROW(train(tiny("ebm", out).energy_limit(1e-12)), DivergenceError);
  EXPECT_THROW(train(tiny("ebm", train_dir("gap")).gap_limit(0)), DivergenceError);  // any CD gap trips it
  struct stat st;
  EXPECT_NE(::stat((out + "/weights.pt").c_str(), &st), 0) << "a diverged model must not be saved";
}

TEST(Train, DivergenceRollsBackAndLowersLr) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  // A NaN loss injected at step 5 must roll back to the step-4 checkpoint,
  // halve the learning rate, and still finish with a finite model.
  auto r = train(tiny("ebm", train_dir("rb")).steps(8).checkpoint_every(2).lr(1e-3).fault_step(5));
  EXPECT_EQ(r.rollbacks, 1);
  EXPECT_EQ(r.steps, 8);
  EXPECT_DOUBLE_EQ(r.card["final_lr"].get<double>(), 5e-4);
  // Twice past max_rollbacks = 0: the run stops with a clear error instead.
  EXPECT_THROW(train(tiny("ebm", train_dir("rb2")).steps(8).checkpoint_every(2).fault_step(5).max_rollbacks(0)),
               DivergenceError);
}

TEST(Train, ResumeIsBitExact) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string full = train_dir("full"), part = train_dir("part");
  train(tiny("jem", full).steps(8));
  auto stopped = train(tiny("jem", part).steps(8).stop_after(5));
  EXPECT_EQ(stopped.steps, 5);
  EXPECT_TRUE(stopped.card.is_null());
  train(tiny("jem", part).steps(8).resume(true));
  auto a = weights(full), b = weights(part);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

// --ema against its definition: one step from known weights w0 to w1 saves
// d * w0 + (1 - d) * w1; and a stopped-and-resumed averaged run is bit-exact.
TEST(Train, WeightAverageMatchesItsDefinitionAndResumes) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string init = train_dir("ema_init"), plain = train_dir("ema_plain"), avg = train_dir("ema_avg");
  train(tiny("dsm", init).steps(2));
  const double d = 0.9;
  train(tiny("dsm", plain).init(init).steps(1));
  train(tiny("dsm", avg).init(init).steps(1).ema(d));
  const auto w0 = weights(init), w1 = weights(plain), wa = weights(avg);
  ASSERT_EQ(w0.size(), wa.size());
  double moved = 0;
  for (size_t i = 0; i < w0.size(); ++i) {
    EXPECT_TRUE(torch::allclose(wa[i], d * w0[i] + (1 - d) * w1[i], 1e-5, 1e-7)) << "parameter " << i;
    moved = std::max(moved, (w1[i] - w0[i]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-6);  // the step changed the weights, so the check above has teeth
  const auto card = load_model(avg)->card();
  EXPECT_DOUBLE_EQ(card["options"]["ema"].get<double>(), d);

  const std::string full = train_dir("ema_full"), part = train_dir("ema_part");
  train(tiny("dsm", full).steps(6).ema(0.5));
  train(tiny("dsm", part).steps(6).ema(0.5).stop_after(4));
  train(tiny("dsm", part).steps(6).ema(0.5).resume(true));
  const auto a = weights(full), b = weights(part);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // A checkpoint written without an average cannot resume into one.
  const std::string noavg = train_dir("ema_noavg");
  train(tiny("dsm", noavg).steps(6).stop_after(4));
  EXPECT_THROW(train(tiny("dsm", noavg).steps(6).ema(0.5).resume(true)), DataError);
  EXPECT_THROW(train(tiny("dsm", train_dir("ema_bad")).ema(1.0)), UsageError);
}

// Test figures come from evaluate_model (`ebm eval`): its accuracy is the
// share of the first n test images whose argmax logit is the label, checked
// here one image at a time.
TEST(Eval, TestAccuracyMatchesBruteForce) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string dir = train_dir("eval-clf");
  train(tiny("clf", dir));
  ebm::ModelEvalOptions eo;
  eo.split = "test";
  eo.n = 60;
  const auto m = ebm::evaluate_model(dir, eo);
  ASSERT_TRUE(m.contains("test_accuracy"));
  EXPECT_EQ(m["test_n"].get<int64_t>(), 60);
  auto model = load_model(dir);
  ebm::DatasetOptions d;
  d.split = "test";
  d.n = 60;
  const auto ds = ebm::load_dataset(load_card(dir)["data"].get<std::string>(), d);
  torch::NoGradGuard ng;
  int64_t correct = 0;
  for (int64_t i = 0; i < 60; ++i)
    correct += model->logits(ds.images.narrow(0, i, 1)).argmax(1).item<int64_t>() == ds.labels[i].item<int64_t>();
  EXPECT_DOUBLE_EQ(m["test_accuracy"].get<double>(), double(correct) / 60.0);
  eo.split = "fit";  // a training split is never an evaluation split
  EXPECT_THROW(ebm::evaluate_model(dir, eo), ebm::UsageError);
}
