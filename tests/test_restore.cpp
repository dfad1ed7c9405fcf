// test_restore.cpp: masks, inpainting (known pixels bit-identical), denoising
// (the reference algorithm, and equivalence with the Python reference run by
// scripts/make_reference_fixtures.py on a TorchScript energy).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>

#include "ebm/core/common.h"
#include "ebm/io/image_io.h"
#include "ebm/core/langevin.h"
#include "ebm/core/tweedie.h"
#include "ebm/core/models.h"
#include "ebm/restore/restore.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {
using ebm::test::rand_images;

std::string fixture(const std::string& name) { return std::string(EBM_SOURCE_DIR) + "/tests/fixtures/" + name; }

// A smooth float32 energy with a non-trivial, position-dependent gradient:
// E(x) = sum_j a_j sin(4 x_j) + 2 (x_j - 0.5)^2.
class WavyQuadraticEnergy : public ebm::Energy {
 public:
  explicit WavyQuadraticEnergy(torch::Tensor a) : a_(std::move(a)) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    return (a_ * torch::sin(4 * x) + 2 * (x - 0.5).pow(2)).flatten(1).sum(1);
  }
  std::string describe() const override { return "wavy"; }

 private:
  torch::Tensor a_;
};

class NanEnergy : public ebm::Energy {
 public:
  torch::Tensor energy(const torch::Tensor& x) override {
    return x.flatten(1).sum(1) * std::numeric_limits<double>::quiet_NaN();
  }
  std::string describe() const override { return "nan"; }
};


std::shared_ptr<WavyQuadraticEnergy> wavy(uint64_t seed = 1) {
  auto gen = at::detail::createCPUGenerator(seed);
  return std::make_shared<WavyQuadraticEnergy>(torch::randn({1, 28, 28}, gen));
}

// denoise_with_ebm from the specification, transcribed to C++ op for op:
//   x = x - step * (grad E(x) + 2 * lambda * (x - y)); x = clamp(x, 0, 1).
torch::Tensor reference_denoise(ebm::Energy& e, const torch::Tensor& y, int64_t steps, double step,
                                double lambda) {
  torch::Tensor x = y.clone();
  for (int64_t t = 0; t < steps; ++t) {
    auto g = ebm::energy_grad(e, x);
    torch::NoGradGuard ng;
    auto total = g + 2 * lambda * (x - y);
    x = (x - step * total).clamp(0, 1);
  }
  return x;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

// ---------------------------------------------------------------- masks

static void Mask_Center() {
  auto m = ebm::make_mask("center:14", 2, 28, 28);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{2, 1, 28, 28}));
  EXPECT_EQ(m.scalar_type(), torch::kFloat32);
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_EQ((m[b] == 0).sum().item<int64_t>(), 196);
    // The 14x14 hole is rows/cols 7..20, the exact centre of 28.
    EXPECT_TRUE((m[b][0].narrow(0, 7, 14).narrow(1, 7, 14) == 0).all().item<bool>());
  }
  EXPECT_TRUE(((m == 0) | (m == 1)).all().item<bool>());
  // Odd sizes: a 3x3 hole in 28 starts at (28-3)/2 = 12.
  auto m3 = ebm::make_mask("center:3", 1, 28, 28);
  EXPECT_EQ((m3 == 0).sum().item<int64_t>(), 9);
  EXPECT_TRUE((m3[0][0].narrow(0, 12, 3).narrow(1, 12, 3) == 0).all().item<bool>());
  EXPECT_EQ((ebm::make_mask("center:28", 1, 28, 28) == 0).sum().item<int64_t>(), 784);
}

static void Mask_Half() {
  auto m = ebm::make_mask("half", 3, 28, 28);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{3, 1, 28, 28}));
  EXPECT_TRUE((m.narrow(2, 0, 14) == 1).all().item<bool>());
  EXPECT_TRUE((m.narrow(2, 14, 14) == 0).all().item<bool>());
  auto odd = ebm::make_mask("half", 1, 5, 4);  // bottom ceil(5/2) = 3 rows missing
  EXPECT_EQ((odd == 0).sum().item<int64_t>(), 12);
}

static void Mask_RandomFractionAndSeed() {
  // 8 x 784 = 6272 Bernoulli(0.5) pixels: SE of the fraction = sqrt(.25/6272) = 0.0063;
  // tolerance 5 SE = 0.032.
  auto m = ebm::make_mask("random:0.5", 8, 28, 28, 3);
  const double missing = (m == 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(missing, 0.5, 5 * std::sqrt(0.25 / 6272));
  auto m2 = ebm::make_mask("random:0.2", 8, 28, 28, 3);
  EXPECT_NEAR((m2 == 0).to(torch::kFloat64).mean().item<double>(), 0.2, 5 * std::sqrt(0.16 / 6272));
  EXPECT_TRUE(torch::equal(m, ebm::make_mask("random:0.5", 8, 28, 28, 3)));
  EXPECT_FALSE(torch::equal(m, ebm::make_mask("random:0.5", 8, 28, 28, 4)));
  EXPECT_FALSE(torch::equal(m[0], m[1]));  // each image its own pattern
  EXPECT_TRUE((ebm::make_mask("random:0", 2, 28, 28) == 1).all().item<bool>());
  EXPECT_TRUE((ebm::make_mask("random:1", 2, 28, 28) == 0).all().item<bool>());
}

static void Mask_FromFile() {
  auto dir = fs::temp_directory_path() / ("ebm_test_mask_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto missing = torch::zeros({28, 28});
  missing.narrow(0, 3, 4).fill_(1.0);  // rows 3..6 missing
  const std::string png = (dir / "m.png").string();
  ebm::write_tensor(png, missing.view({1, 1, 28, 28}));
  auto m = ebm::make_mask(png, 2, 28, 28);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{2, 1, 28, 28}));
  EXPECT_TRUE(torch::equal(m[1][0], 1 - missing));
  EXPECT_THROW(ebm::make_mask(png, 2, 14, 14), ebm::DataError);  // size mismatch
  EXPECT_THROW(ebm::make_mask((dir / "none.png").string(), 1, 28, 28), ebm::DataError);
  fs::remove_all(dir);
}

static void Mask_BadSpecsThrowUsageError() {
  for (const std::string bad : {"center:0", "center:29", "center:-3", "center:abc", "center:", "center",
                                "center:14.5", "center:1e30", "center:nan", "random:1.5", "random:-0.1",
                                "random:x", "random:0.5x", "random:nan", "half:3", "bogus", "square:4",
                                ""}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(ebm::make_mask(bad, 1, 28, 28), ebm::UsageError);
  }
}

// ---------------------------------------------------------------- inpaint

static void Inpaint_KnownPixelsBitIdentical() {
  auto e = wavy(2);
  auto img = rand_images({2, 1, 28, 28}, 5);
  auto known = ebm::make_mask("center:12", 2, 28, 28);
  auto k = known.to(torch::kBool);
  for (int64_t chains : {1, 3}) {
    SCOPED_TRACE("chains " + std::to_string(chains));
    ebm::InpaintOptions o;
    o.steps(40).chains(chains).seed(7);
    auto out = ebm::inpaint(*e, img, known, o);
    ASSERT_EQ(out.sizes(), img.sizes());
    EXPECT_TRUE(torch::equal(out.masked_select(k), img.masked_select(k)));
    EXPECT_FALSE(torch::equal(out.masked_select(~k), img.masked_select(~k)));
    EXPECT_GE(out.min().item<float>(), 0.0f);
    EXPECT_LE(out.max().item<float>(), 1.0f);
    // Same seed, same result.
    EXPECT_TRUE(torch::equal(out, ebm::inpaint(*e, img, known, o)));
  }
  // A single [1,1,H,W] mask applies to the whole batch.
  ebm::InpaintOptions o;
  o.steps(10);
  auto out = ebm::inpaint(*e, img, known.narrow(0, 0, 1), o);
  EXPECT_TRUE(torch::equal(out.masked_select(k), img.masked_select(k)));
  EXPECT_THROW(ebm::inpaint(*e, img, known, ebm::InpaintOptions().chains(0)), ebm::UsageError);
}

static void Inpaint_BestOfChainsIsLowestEnergy() {
  // Rebuild the chains inpaint() runs (chain c of image i at row c*B + i, one
  // generator for the start and the noise) and check it keeps the best chain.
  auto e = wavy(3);
  const int64_t b = 2, k = 3;
  auto img = rand_images({b, 1, 28, 28}, 6);
  auto known = ebm::make_mask("half", b, 28, 28);
  ebm::InpaintOptions o;
  o.steps(30).chains(k).seed(11);
  auto out = ebm::inpaint(*e, img, known, o);

  auto gen = at::detail::createCPUGenerator(11);
  auto rep = img.repeat({k, 1, 1, 1});
  auto mask = (known != 0).repeat({k, 1, 1, 1});
  auto x0 = torch::where(mask, rep, torch::rand(rep.sizes(), gen));
  ebm::LangevinOptions lo;
  lo.steps(o.steps()).step_size(o.step_size()).noise(o.noise());
  ebm::LangevinTerms t;
  t.known_mask = mask;
  auto r = ebm::langevin(*e, x0, lo, t, &gen);
  auto en = r.energy.view({k, b});
  for (int64_t i = 0; i < b; ++i) {
    const int64_t best = en.select(1, i).argmin().item<int64_t>();
    EXPECT_TRUE(torch::equal(out[i], r.x[best * b + i])) << "image " << i;
    // and its energy is the minimum over the chains
    auto ei = e->energy(out.narrow(0, i, 1)).item<double>();
    EXPECT_NEAR(ei, en.select(1, i).min().item<double>(), 1e-3);
  }
}

static void Inpaint_DivergenceIsReported() {
  NanEnergy e;
  auto img = rand_images({1, 1, 28, 28}, 1);
  EXPECT_THROW(ebm::inpaint(e, img, ebm::make_mask("half", 1, 28, 28), ebm::InpaintOptions().steps(3)),
               ebm::DivergenceError);
}

// ---------------------------------------------------------------- denoise

static void Denoise_FixedEqualsReferenceAlgorithm() {
  auto e = wavy(4);
  auto y = rand_images({3, 1, 28, 28}, 8);
  ebm::DenoiseOptions o;  // defaults: fixed, 100 steps, 0.01, lambda 10, no noise
  auto out = ebm::denoise(*e, y, o);
  auto ref = reference_denoise(*e, y, 100, 0.01, 10.0);
  EXPECT_LE(max_abs_diff(out, ref), 1e-6);
  EXPECT_GT(max_abs_diff(out, y), 0.01);  // the energy did something
  // Other settings, including a strong clamp-active prior.
  o.steps(37).step_size(0.03).data_weight(0.5);
  EXPECT_LE(max_abs_diff(ebm::denoise(*e, y, o), reference_denoise(*e, y, 37, 0.03, 0.5)), 1e-6);
}

static void Denoise_ProgressiveEqualsChainedReference() {
  auto e = wavy(5);
  auto y = rand_images({2, 1, 28, 28}, 9);
  ebm::DenoiseOptions o;
  o.schedule("progressive");
  auto out = ebm::denoise(*e, y, o);
  torch::Tensor ref = y;
  for (double w : {1.0, 0.5, 0.25, 0.1}) ref = reference_denoise(*e, ref, 50, 0.01, w);
  EXPECT_LE(max_abs_diff(out, ref), 1e-6);
  // Custom stages.
  o.stage_weights({3.0, 0.2}).stage_steps(20);
  ref = reference_denoise(*e, reference_denoise(*e, y, 20, 0.01, 3.0), 20, 0.01, 0.2);
  EXPECT_LE(max_abs_diff(ebm::denoise(*e, y, o), ref), 1e-6);
}

static void Denoise_NoiseSeedAndErrors() {
  auto e = wavy(6);
  auto y = rand_images({2, 1, 28, 28}, 10);
  ebm::DenoiseOptions o;
  o.steps(20).noise(0.01).seed(3);
  auto a = ebm::denoise(*e, y, o);
  EXPECT_TRUE(torch::equal(a, ebm::denoise(*e, y, o)));
  EXPECT_FALSE(torch::equal(a, ebm::denoise(*e, y, ebm::DenoiseOptions(o).seed(4))));
  EXPECT_THROW(ebm::denoise(*e, y, ebm::DenoiseOptions().schedule("annealed")), ebm::UsageError);
  NanEnergy bad;
  EXPECT_THROW(ebm::denoise(bad, y, ebm::DenoiseOptions().steps(2)), ebm::DivergenceError);
}

// The Python reference (denoise_with_ebm / progressive_denoising from the
// specification) run by scripts/make_reference_fixtures.py on the TorchScript
// energy tests/fixtures/ref_energy.pt. Both sides use LibTorch 1.13; the
// tolerance 1e-5 (max abs, pixels in [0,1]) leaves room for reduction-order
// differences in conv backward between thread counts, nothing more.
TEST(Denoise, MatchesPythonReference) {
  if (!fs::exists(fixture("ref_energy.pt")))
    FAIL() << "missing " << fixture("ref_energy.pt") << ": run /usr/bin/python3 scripts/make_reference_fixtures.py";
  auto model = ebm::load_model(fixture("ref_energy.pt"));
  ASSERT_EQ(model->num_classes(), 0);  // an energy, [B]
  auto noisy = ebm::read_tensor(fixture("ref_noisy.npy"));
  auto want_fixed = ebm::read_tensor(fixture("ref_denoised_fixed.npy"));
  auto want_prog = ebm::read_tensor(fixture("ref_denoised_progressive.npy"));
  ASSERT_EQ(noisy.sizes(), (std::vector<int64_t>{4, 1, 28, 28}));
  ASSERT_EQ(want_fixed.sizes(), noisy.sizes());
  ASSERT_EQ(want_prog.sizes(), noisy.sizes());

  ebm::DenoiseOptions o;
  o.schedule("fixed").steps(100).step_size(0.01).data_weight(10.0);
  auto fixed = ebm::denoise(*model, noisy, o);
  std::printf("[   info   ] fixed: max|C++ - Python| = %.3g, max|out - noisy| = %.3g\n",
              max_abs_diff(fixed, want_fixed), max_abs_diff(fixed, noisy));
  EXPECT_LE(max_abs_diff(fixed, want_fixed), 1e-5);
  EXPECT_GT(max_abs_diff(fixed, noisy), 0.01) << "fixture too weak: the test would pass trivially";

  ebm::DenoiseOptions p;
  p.schedule("progressive");  // stages 1, .5, .25, .1 of 50 steps at 0.01, as the reference
  auto prog = ebm::denoise(*model, noisy, p);
  std::printf("[   info   ] progressive: max|C++ - Python| = %.3g, max|out - noisy| = %.3g\n",
              max_abs_diff(prog, want_prog), max_abs_diff(prog, noisy));
  EXPECT_LE(max_abs_diff(prog, want_prog), 1e-5);
  EXPECT_GT(max_abs_diff(prog, noisy), 0.01) << "fixture too weak: the test would pass trivially";
  EXPECT_GT(max_abs_diff(prog, fixed), 0.01);  // the two schedules really differ
}

// ---------------------------------------------------------------- test cases
// Each ctest entry is its own process and LibTorch takes ~0.7 s to load, so
// related checks share one TEST; SCOPED_TRACE names the check that failed.

TEST(Mask, Specs) {
  {
    SCOPED_TRACE("Center");
    Mask_Center();
  }
  {
    SCOPED_TRACE("Half");
    Mask_Half();
  }
  {
    SCOPED_TRACE("RandomFractionAndSeed");
    Mask_RandomFractionAndSeed();
  }
  {
    SCOPED_TRACE("FromFile");
    Mask_FromFile();
  }
  {
    SCOPED_TRACE("BadSpecsThrowUsageError");
    Mask_BadSpecsThrowUsageError();
  }
}

TEST(Inpaint, KnownPixelsBestChainDivergence) {
  {
    SCOPED_TRACE("KnownPixelsBitIdentical");
    Inpaint_KnownPixelsBitIdentical();
  }
  {
    SCOPED_TRACE("BestOfChainsIsLowestEnergy");
    Inpaint_BestOfChainsIsLowestEnergy();
  }
  {
    SCOPED_TRACE("DivergenceIsReported");
    Inpaint_DivergenceIsReported();
  }
}

TEST(Denoise, MatchesReferenceAlgorithm) {
  {
    SCOPED_TRACE("FixedEqualsReferenceAlgorithm");
    Denoise_FixedEqualsReferenceAlgorithm();
  }
  {
    SCOPED_TRACE("ProgressiveEqualsChainedReference");
    Denoise_ProgressiveEqualsChainedReference();
  }
  {
    SCOPED_TRACE("NoiseSeedAndErrors");
    Denoise_NoiseSeedAndErrors();
  }
}

// ebm_inpaint's "tweedie" runs every chain of every image as one batch. Oracle:
// the loop written out here, one chain at a time through tweedie_step on the
// same noise (the noise of a step is one draw over all rows, chain-major), on
// a shipped convolutional prior, so a batch-dependent kernel would show.
TEST(RestoreEval, TweedieInpaintBatchedChainsEqualOneByOne) {
  auto e = ebm::load_model(std::string(EBM_SOURCE_DIR) + "/models/mnist-dsm");
  const int64_t b = 3, k = 4, levels = 3, repeats = 2;
  const double s_max = 0.8, s_min = 0.1;
  const auto image = rand_images({b, 1, 28, 28}, 5);
  const auto known = ebm::make_mask("center:14", b, 28, 28);
  const auto got = ebm::ebm_inpaint(*e, "tweedie", image, known, k, /*seed=*/9, s_max, s_min, levels, repeats);

  auto gen = at::detail::createCPUGenerator(9);
  const auto kn = (known != 0).expand_as(image);
  const auto kf = kn.to(torch::kFloat32);
  const auto fill = (image * kf).sum({1, 2, 3}, true) / kf.sum({1, 2, 3}, true);
  const auto x0 = torch::where(kn, image, fill.expand_as(image));
  auto x = x0.repeat({k, 1, 1, 1});
  for (int64_t l = 0; l < levels; ++l) {
    const double s = s_max * std::pow(s_min / s_max, double(l) / double(levels - 1));
    for (int64_t r = 0; r < repeats; ++r) {
      const auto z = x + s * torch::randn(x.sizes(), gen);
      std::vector<torch::Tensor> chains;
      for (int64_t c = 0; c < k; ++c)
        chains.push_back(torch::where(kn, x0, ebm::tweedie_step(*e, z.narrow(0, c * b, b), s)));
      x = torch::cat(chains);
    }
  }
  const auto want = torch::where(kn, image, x.view({k, b, 1, 28, 28}).mean(0));
  EXPECT_LT(max_abs_diff(got, want), 1e-5);
  EXPECT_TRUE(torch::equal(got.masked_select(kn), image.masked_select(kn)));  // known pixels exact
  EXPECT_GT(max_abs_diff(got, image), 0.05);                                  // the hole was filled
}
