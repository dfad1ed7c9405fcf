// test_langevin.cpp: the one sampler. Analytic Gaussian oracle, every term
// (frozen pixels, box clamp, L-inf ball, fidelity, grad clip), seeds,
// divergence and schedules; how its gradient passes use the cores (parallel.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <set>
#include <thread>

#include "ebm/core/allocator.h"
#include "ebm/core/common.h"
#include "ebm/core/energy.h"
#include "ebm/core/langevin.h"
#include "ebm/core/models.h"
#include "ebm/core/parallel.h"
#include "test_util.h"

namespace {
using ebm::test::rand_images;

// E(x) = scale * sum(x): a constant gradient `scale` everywhere.
class LinearEnergy : public ebm::Energy {
 public:
  explicit LinearEnergy(double scale) : scale_(scale) {}
  torch::Tensor energy(const torch::Tensor& x) override { return x.flatten(1).sum(1) * scale_; }
  std::string describe() const override { return "linear"; }

 private:
  double scale_;
};

// E(x) = NaN once x has been visited `after` times (0 = from the start).
class NanAfterCallsEnergy : public ebm::Energy {
 public:
  explicit NanAfterCallsEnergy(int after) : after_(after) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    auto e = (x * x).flatten(1).sum(1);
    return calls_++ >= after_ ? e * std::numeric_limits<double>::quiet_NaN() : e;
  }
  std::string describe() const override { return "nan"; }

 private:
  int after_;
  int calls_ = 0;
};


struct Moments {
  double mean_err_max;  // max over pixels of |mean - mu|
  double var_pooled;    // per-pixel sample variances, averaged over pixels
};

// x: [N,1,H,W] samples of N(mu, v I) -> per-pixel moment checks.
Moments moments(const torch::Tensor& x, const torch::Tensor& mu) {
  auto xd = x.to(torch::kFloat64);
  auto mean = xd.mean(0);                              // [1,H,W]
  auto var = xd.var(0, /*unbiased=*/true);             // [1,H,W]
  return {(mean - mu.to(torch::kFloat64)).abs().max().item<double>(), var.mean().item<double>()};
}

}  // namespace

// ---------------------------------------------------------------- (a) analytic oracle

// With noise = sqrt(2h) and no clamp, the chain is unadjusted Langevin for
// exp(-E) = N(mu, sigma^2 I). For this Gaussian the update is the linear
// AR(1) map x' = (1 - h/s2) x + h mu/s2 + sqrt(2h) xi, whose stationary law is
// N(mu, v) with
//     v = 2h / (1 - (1 - h/s2)^2) = s2 / (1 - h/(2 s2))        (s2 = sigma^2),
// the known discretisation bias of ULA. After n steps from x0 the remaining
// bias of the mean is (1 - h/s2)^n |x0 - mu| and of the variance v (1-h/s2)^(2n).
//
// Tolerances (5 standard errors; the test is deterministic for a fixed seed,
// and a different seed would fail with probability < 1e-5):
//   N = 2000 chains of [1,1,4,4] = 16 pixels, independent given the seed.
//   mean, per pixel:   SE = sqrt(v/N) = sqrt(1.005/2000) = 0.0224 -> tol 0.112
//   variance, pooled over 16 pixels: SE(var) = v sqrt(2/(N-1)) / sqrt(16)
//                      = 1.005 * 0.0316 / 4 = 0.0079              -> tol 0.040
// The bias term v - sigma^2 = 0.005 at h = 0.01 is below that resolution, so a
// second run at h = 0.2 (v = 1/0.9 = 1.111, 14 SE away from 1) checks that the
// sampler is exactly this discretisation (noise sqrt(2h), step h on grad E).
static void Langevin_GaussianOracleMatchesMeanAndVariance() {
  const double sigma = 1.0;
  auto mu = torch::linspace(-1.5, 1.5, 16).view({1, 4, 4});  // [C,H,W]
  ebm::GaussianEnergy e(mu, sigma);
  const int64_t n = 2000;
  auto x0 = torch::zeros({n, 1, 4, 4});
  struct Case {
    double h;
    int64_t steps;
  };
  for (Case c : {Case{0.01, 1500}, Case{0.2, 150}}) {
    SCOPED_TRACE("step " + std::to_string(c.h));
    // Residual bias after `steps`: (1 - h)^steps * 1.5 = 4e-7 (h=.01), 4e-15 (h=.2).
    ebm::LangevinOptions o;
    o.steps(c.steps).step_size(c.h).noise(std::sqrt(2 * c.h)).clamp(false).seed(11);
    auto r = ebm::langevin(e, x0, o);
    ASSERT_FALSE(r.diverged);
    EXPECT_EQ(r.steps_run, c.steps);
    const double v = sigma * sigma / (1 - c.h / (2 * sigma * sigma));
    const double se_mean = std::sqrt(v / n);
    const double se_var = v * std::sqrt(2.0 / (n - 1)) / std::sqrt(16.0);
    auto m = moments(r.x, mu);
    std::printf("[   info   ] h=%g: max|mean-mu| %.4f (tol %.4f), var %.4f (expected %.4f +- %.4f)\n", c.h,
                m.mean_err_max, 5 * se_mean, m.var_pooled, v, 5 * se_var);
    EXPECT_LT(m.mean_err_max, 5 * se_mean);
    EXPECT_NEAR(m.var_pooled, v, 5 * se_var);
    // The result's energy is E at the final iterate.
    EXPECT_TRUE(torch::allclose(r.energy, e.energy(r.x), 1e-5, 1e-5));
  }
}

static void Langevin_NoiseFreeChainConvergesToMode() {
  auto mu = torch::full({1, 3, 3}, 0.3);
  ebm::GaussianEnergy e(mu, 0.5);
  ebm::LangevinOptions o;
  o.steps(400).step_size(0.05).noise(0).tolerance(1e-7);
  auto r = ebm::langevin(e, rand_images({4, 1, 3, 3}, 1), o);
  EXPECT_TRUE(r.converged);
  EXPECT_LT(r.steps_run, 400);
  EXPECT_LT((r.x - 0.3).abs().max().item<double>(), 1e-5);
}

// ---------------------------------------------------------------- (b)-(d) constraints

static void Langevin_KnownPixelsStayBitIdentical() {
  LinearEnergy e(3.0);  // pushes every free pixel down hard
  auto x0 = rand_images({3, 1, 8, 8}, 2);
  auto known = (rand_images({3, 1, 8, 8}, 3) < 0.4).to(torch::kFloat32);
  for (bool clamp : {true, false}) {
    ebm::LangevinOptions o;
    o.steps(30).step_size(0.05).noise(0.1).clamp(clamp).seed(5);
    ebm::LangevinTerms t;
    t.known_mask = known;
    int hooks = 0;
    auto r = ebm::langevin(e, x0, o, t, nullptr, [&](const ebm::LangevinStep& s) {
      ++hooks;
      auto m = known.to(torch::kBool);
      EXPECT_TRUE(torch::equal(s.x.masked_select(m), x0.masked_select(m))) << "step " << s.step;
    });
    EXPECT_EQ(hooks, 30);
    auto m = known.to(torch::kBool);
    EXPECT_TRUE(torch::equal(r.x.masked_select(m), x0.masked_select(m)));
    // The free pixels did move.
    EXPECT_GT((r.x - x0).masked_select(~m).abs().min().item<double>(), 0.0);
  }
  // A mask broadcast over the batch ([1,1,H,W]) works the same.
  ebm::LangevinOptions o;
  o.steps(10).step_size(0.05).noise(0.1);
  ebm::LangevinTerms t;
  t.known_mask = known.narrow(0, 0, 1);
  auto r = ebm::langevin(e, x0, o, t);
  auto m = t.known_mask.expand_as(x0).to(torch::kBool);
  EXPECT_TRUE(torch::equal(r.x.masked_select(m), x0.masked_select(m)));
}

static void Langevin_ClampHoldsForEveryIterate() {
  LinearEnergy e(-2.0);  // pushes up, out of the box
  ebm::LangevinOptions o;
  o.steps(40).step_size(0.1).noise(0.5).clamp_min(0.2).clamp_max(0.7).seed(1);
  auto r = ebm::langevin(e, rand_images({4, 1, 6, 6}, 4), o, {}, nullptr,
                         [&](const ebm::LangevinStep& s) {
                           EXPECT_GE(s.x.min().item<double>(), 0.2 - 1e-7) << "step " << s.step;
                           EXPECT_LE(s.x.max().item<double>(), 0.7 + 1e-7) << "step " << s.step;
                         });
  EXPECT_GE(r.x.min().item<float>(), 0.2f - 1e-7f);
  EXPECT_LE(r.x.max().item<float>(), 0.7f + 1e-7f);
  EXPECT_GT(r.x.eq(0.7f).sum().item<int64_t>(), 0);  // the box is actually active
  // Empty box is a usage error.
  o.clamp_min(0.5).clamp_max(0.5);
  EXPECT_THROW(ebm::langevin(e, rand_images({1, 1, 2, 2}, 0), o), ebm::UsageError);
}

static void Langevin_LinfBallHoldsForEveryIterate() {
  LinearEnergy e(5.0);
  auto center = rand_images({4, 1, 6, 6}, 5);
  const double eps = 0.03;
  ebm::LangevinOptions o;
  o.steps(25).step_size(0.05).noise(0.2).seed(2);
  ebm::LangevinTerms t;
  t.linf_center = center;
  t.linf_eps = eps;
  auto check = [&](const torch::Tensor& x) {
    // In float64, so the check is not itself rounded; float32 rounding of
    // center +- eps is < 0.5 ulp(1) = 6e-8.
    return (x.to(torch::kFloat64) - center.to(torch::kFloat64)).abs().max().item<double>();
  };
  auto r = ebm::langevin(e, center, o, t, nullptr, [&](const ebm::LangevinStep& s) {
    EXPECT_LE(check(s.x), eps + 1e-7) << "step " << s.step;
  });
  EXPECT_LE(check(r.x), eps + 1e-7);
  EXPECT_GT(check(r.x), eps - 1e-3);  // the ball is actually active
  // The box still applies on top of the ball.
  EXPECT_GE(r.x.min().item<float>(), 0.0f);
  EXPECT_LE(r.x.max().item<float>(), 1.0f);
}

// ---------------------------------------------------------------- (e) seeds

TEST(Langevin, SeedDeterminism) {
  ebm::GaussianEnergy e(torch::full({1, 5, 5}, 0.5), 0.3);
  auto x0 = rand_images({6, 1, 5, 5}, 6);
  ebm::LangevinOptions o;
  o.steps(20).step_size(0.01).noise(0.05).seed(42);
  auto a = ebm::langevin(e, x0, o);
  auto b = ebm::langevin(e, x0, o);
  EXPECT_TRUE(torch::equal(a.x, b.x));
  EXPECT_TRUE(torch::equal(a.energy, b.energy));
  o.seed(43);
  auto c = ebm::langevin(e, x0, o);
  EXPECT_FALSE(torch::equal(a.x, c.x));
  // A caller-owned generator seeded like options.seed gives the same chain,
  // and continues its stream across calls.
  o.seed(42);
  auto gen = at::detail::createCPUGenerator(42);
  auto d = ebm::langevin(e, x0, o, {}, &gen);
  EXPECT_TRUE(torch::equal(a.x, d.x));
  auto d2 = ebm::langevin(e, x0, o, {}, &gen);
  EXPECT_FALSE(torch::equal(d.x, d2.x));
  // x0 itself is never modified.
  EXPECT_TRUE(torch::equal(x0, rand_images({6, 1, 5, 5}, 6)));
}

// ---------------------------------------------------------------- (f) fidelity

static void Langevin_FidelityPullsToTarget() {
  // E ~ 0: a Gaussian with sigma 1e6 has gradient (x - mu)/1e12.
  ebm::GaussianEnergy flat(torch::zeros({1, 4, 4}), 1e6);
  auto x0 = rand_images({2, 1, 4, 4}, 7);
  auto y = rand_images({2, 1, 4, 4}, 8);
  const double w = 2.0, h = 0.05;
  ebm::LangevinOptions o;
  o.steps(60).step_size(h).noise(0);
  ebm::LangevinTerms t;
  t.fidelity_target = y;
  t.fidelity_weight = w;
  auto r = ebm::langevin(flat, x0, o, t);
  // Exactly geometric: x_n - y = (1 - 2 w h)^n (x0 - y) = 0.8^60 (x0 - y).
  auto expected = y + std::pow(1 - 2 * w * h, 60) * (x0 - y);
  EXPECT_TRUE(torch::allclose(r.x, expected, 0, 1e-6));
  EXPECT_LT((r.x - y).abs().max().item<double>(), 1e-5);
  // Fidelity weight without a target is a programming error.
  ebm::LangevinTerms bad;
  bad.fidelity_weight = 1.0;
  EXPECT_ANY_THROW(ebm::langevin(flat, x0, o, bad));
}

// ---------------------------------------------------------------- (g) divergence

static void Langevin_NanEnergySetsDiverged() {
  auto x0 = rand_images({2, 1, 3, 3}, 9);
  ebm::LangevinOptions o;
  o.steps(10).step_size(0.01).noise(0.01);
  {
    NanAfterCallsEnergy e(0);
    auto r = ebm::langevin(e, x0, o);
    EXPECT_TRUE(r.diverged);
    EXPECT_EQ(r.steps_run, 0);
    EXPECT_TRUE(torch::equal(r.x, x0));  // the last finite iterate
  }
  {
    NanAfterCallsEnergy e(4);  // finite for 4 steps
    auto r = ebm::langevin(e, x0, o);
    EXPECT_TRUE(r.diverged);
    EXPECT_EQ(r.steps_run, 4);
    EXPECT_TRUE(torch::isfinite(r.x).all().item<bool>());
  }
  {
    // An infinite gradient from a finite energy also counts.
    struct SqrtEnergy : ebm::Energy {
      torch::Tensor energy(const torch::Tensor& x) override { return x.abs().sqrt().flatten(1).sum(1); }
      std::string describe() const override { return "sqrt"; }
    } e;
    auto r = ebm::langevin(e, torch::zeros({1, 1, 2, 2}), o);
    EXPECT_TRUE(r.diverged);
  }
}

// ---------------------------------------------------------------- (h) schedules

static void Langevin_ScheduleFactors() {
  const int64_t T = 11;
  auto s = ebm::Schedule::parse("constant");
  EXPECT_EQ(s.kind, ebm::Schedule::kConstant);
  EXPECT_DOUBLE_EQ(s.factor(0, T), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(T - 1, T), 1.0);

  s = ebm::Schedule::parse("linear:0.1");
  EXPECT_EQ(s.kind, ebm::Schedule::kLinear);
  EXPECT_DOUBLE_EQ(s.factor(0, T), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(5, T), 0.55);
  EXPECT_DOUBLE_EQ(s.factor(T - 1, T), 0.1);

  s = ebm::Schedule::parse("cosine:0.01");
  EXPECT_EQ(s.kind, ebm::Schedule::kCosine);
  EXPECT_DOUBLE_EQ(s.factor(0, T), 1.0);
  EXPECT_NEAR(s.factor(5, T), 0.505, 1e-12);  // halfway: mean of the ends
  EXPECT_NEAR(s.factor(T - 1, T), 0.01, 1e-12);

  s = ebm::Schedule::parse("geometric:0.1");
  EXPECT_EQ(s.kind, ebm::Schedule::kGeometric);
  EXPECT_DOUBLE_EQ(s.factor(0, T), 1.0);
  EXPECT_NEAR(s.factor(5, T), std::sqrt(0.1), 1e-12);
  EXPECT_NEAR(s.factor(T - 1, T), 0.1, 1e-12);

  // Increasing schedules are allowed too.
  EXPECT_NEAR(ebm::Schedule::parse("linear:3").factor(T - 1, T), 3.0, 1e-12);
  // A one-step chain starts at 1.
  EXPECT_DOUBLE_EQ(ebm::Schedule::parse("geometric:0.1").factor(0, 1), 1.0);
}

static void Langevin_ScheduleParseErrors() {
  for (const std::string bad : {"", "cubic", "linear:", "linear:abc", "linear:0", "linear:-1",
                                "cosine:nan", "linear:inf", "geometric:0.1x", "linear:1e999x",
                                "linear:0.1 2", "Linear:0.1"}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(ebm::Schedule::parse(bad), ebm::UsageError);
  }
}

static void Langevin_StepScheduleIsApplied() {
  // Noise-free chain on E = sum(x): each step moves by exactly step_size * factor(t).
  LinearEnergy e(1.0);
  ebm::LangevinOptions o;
  o.steps(4).step_size(0.1).noise(0).clamp(false).step_schedule(ebm::Schedule::parse("linear:0.25"));
  std::vector<double> moves;
  torch::Tensor prev = torch::zeros({1, 1, 1, 1});
  ebm::langevin(e, prev, o, {}, nullptr, [&](const ebm::LangevinStep& s) {
    moves.push_back((prev - s.x).item<double>());
    prev = s.x.clone();
  });
  ASSERT_EQ(moves.size(), 4u);
  const double f[] = {1.0, 0.75, 0.5, 0.25};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(moves[i], 0.1 * f[i], 1e-7) << "step " << i;
}

// ---------------------------------------------------------------- (i) grad clip

static void Langevin_GradClipBoundsTheMove() {
  LinearEnergy e(1e6);  // huge gradient
  auto x0 = rand_images({2, 1, 5, 5}, 10) * 0.5 + 0.25;
  const double h = 0.1, clip = 0.03;
  ebm::LangevinOptions o;
  o.steps(1).step_size(h).noise(0).grad_clip(clip).clamp(false);
  auto r = ebm::langevin(e, x0, o);
  const double move = (r.x - x0).abs().max().item<double>();
  EXPECT_LE(move, h * clip + 1e-7);
  EXPECT_GE(move, h * clip - 1e-7);  // and clipped, not zeroed
  // Without the clip the same step flies off.
  o.grad_clip(0);
  EXPECT_GT((ebm::langevin(e, x0, o).x - x0).abs().max().item<double>(), 1e4);
}

static void Langevin_BadOptionsThrowUsageError() {
  LinearEnergy e(1.0);
  auto x0 = torch::zeros({1, 1, 2, 2});
  ebm::LangevinOptions o;
  EXPECT_THROW(ebm::langevin(e, x0, ebm::LangevinOptions(o).steps(-1)), ebm::UsageError);
  EXPECT_THROW(ebm::langevin(e, x0, ebm::LangevinOptions(o).step_size(-0.1)), ebm::UsageError);
  EXPECT_THROW(ebm::langevin(e, x0, ebm::LangevinOptions(o).noise(-1)), ebm::UsageError);
  EXPECT_THROW(ebm::langevin(e, x0, ebm::LangevinOptions(o).step_size(std::nan(""))), ebm::UsageError);
  // Zero steps returns x0 and its energy.
  auto r = ebm::langevin(e, x0, ebm::LangevinOptions(o).steps(0));
  EXPECT_TRUE(torch::equal(r.x, x0));
  EXPECT_EQ(r.steps_run, 0);
  EXPECT_TRUE(torch::equal(r.energy, torch::zeros({1})));
}

// ---------------------------------------------------------------- test cases
// Each ctest entry is its own process and LibTorch takes ~0.7 s to load, so
// related checks share one TEST; SCOPED_TRACE names the check that failed.

TEST(Langevin, GaussianOracle) {
  {
    SCOPED_TRACE("GaussianOracleMatchesMeanAndVariance");
    Langevin_GaussianOracleMatchesMeanAndVariance();
  }
  {
    SCOPED_TRACE("NoiseFreeChainConvergesToMode");
    Langevin_NoiseFreeChainConvergesToMode();
  }
}

TEST(Langevin, Constraints) {
  {
    SCOPED_TRACE("KnownPixelsStayBitIdentical");
    Langevin_KnownPixelsStayBitIdentical();
  }
  {
    SCOPED_TRACE("ClampHoldsForEveryIterate");
    Langevin_ClampHoldsForEveryIterate();
  }
  {
    SCOPED_TRACE("LinfBallHoldsForEveryIterate");
    Langevin_LinfBallHoldsForEveryIterate();
  }
}

TEST(Langevin, FidelityAndGradClip) {
  {
    SCOPED_TRACE("FidelityPullsToTarget");
    Langevin_FidelityPullsToTarget();
  }
  {
    SCOPED_TRACE("GradClipBoundsTheMove");
    Langevin_GradClipBoundsTheMove();
  }
}

TEST(Langevin, DivergenceAndBadOptions) {
  {
    SCOPED_TRACE("NanEnergySetsDiverged");
    Langevin_NanEnergySetsDiverged();
  }
  {
    SCOPED_TRACE("BadOptionsThrowUsageError");
    Langevin_BadOptionsThrowUsageError();
  }
}

TEST(Langevin, Schedules) {
  {
    SCOPED_TRACE("ScheduleFactors");
    Langevin_ScheduleFactors();
  }
  {
    SCOPED_TRACE("ScheduleParseErrors");
    Langevin_ScheduleParseErrors();
  }
  {
    SCOPED_TRACE("StepScheduleIsApplied");
    Langevin_StepScheduleIsApplied();
  }
}

// ---------------------------------------------------------------- cores (parallel.h)
namespace {
// Records the intra-op thread count and the threads its forward passes ran on.
class ThreadProbe : public ebm::Energy {
 public:
  explicit ThreadProbe(bool independent) : independent_(independent) {}
  torch::Tensor energy(const torch::Tensor& x) override {
    std::lock_guard<std::mutex> lk(mu);
    seen = at::get_num_threads();
    ids.insert(std::this_thread::get_id());
    max_rows = std::max(max_rows, x.size(0));
    return x.flatten(1).pow(2).sum(1);
  }
  bool rows_independent() const override { return independent_; }
  std::string describe() const override { return "thread-probe"; }
  std::mutex mu;
  int seen = 0;
  int64_t max_rows = 0;
  std::set<std::thread::id> ids;

 private:
  bool independent_;
};
}  // namespace

TEST(Parallel, ScopedIntraOpThreadsSetsAndRestores) {
  ebm::set_threads(2);
  {
    ebm::ScopedIntraOpThreads one(1);
    EXPECT_EQ(at::get_num_threads(), 1);
  }
  EXPECT_EQ(at::get_num_threads(), 2);
  EXPECT_THROW(ebm::ScopedIntraOpThreads(0), c10::Error);
}

TEST(Parallel, PolicyTables) {
  EXPECT_EQ(ebm::intra_op_threads_for(1, 2), 1);
  EXPECT_EQ(ebm::intra_op_threads_for(ebm::kSerialMaxRows, 2), 1);
  EXPECT_EQ(ebm::intra_op_threads_for(ebm::kSerialMaxRows + 1, 2), 2);
  EXPECT_EQ(ebm::intra_op_threads_for(1000, 1), 1);
  EXPECT_THROW(ebm::intra_op_threads_for(1, 0), c10::Error);
  EXPECT_EQ(ebm::shards_for(1, 2), 1);
  EXPECT_EQ(ebm::shards_for(2, 2), 2);
  EXPECT_EQ(ebm::shards_for(3, 8), 3);
  EXPECT_EQ(ebm::shards_for(1000, 2), 2);
  EXPECT_EQ(ebm::shards_for(8, 1), 1);
  // shard_rows against the obvious loop: consecutive, covering, sizes differ by at most 1.
  for (int64_t rows : {1, 2, 5, 16, 17})
    for (int n = 1; n <= std::min<int64_t>(rows, 4); ++n) {
      int64_t next = 0, lo = rows, hi = 0;
      for (int i = 0; i < n; ++i) {
        const auto r = ebm::shard_rows(rows, n, i);
        EXPECT_EQ(r.begin, next);
        next += r.length;
        lo = std::min(lo, r.length);
        hi = std::max(hi, r.length);
      }
      EXPECT_EQ(next, rows);
      EXPECT_LE(hi - lo, 1);
    }
  EXPECT_THROW(ebm::shard_rows(2, 3, 0), c10::Error);
}

TEST(Parallel, RunShardsRunsEachIndexOnceOnItsOwnThreadWithOneIntraOpThread) {
  ebm::set_threads(2);
  std::mutex mu;
  std::vector<int> count(3, 0), threads(3, 0);
  std::set<std::thread::id> ids;
  torch::NoGradGuard caller_state;  // thread-local state travels to the shards
  std::vector<bool> grad_on(3, true);
  ASSERT_TRUE(ebm::run_shards(3, [&](int i) {
    std::lock_guard<std::mutex> lk(mu);
    ++count[i];
    threads[i] = at::get_num_threads();
    grad_on[i] = torch::GradMode::is_enabled();
    ids.insert(std::this_thread::get_id());
  }));
  EXPECT_EQ(count, std::vector<int>({1, 1, 1}));
  EXPECT_EQ(threads, std::vector<int>({1, 1, 1}));
  EXPECT_EQ(grad_on, std::vector<bool>({false, false, false}));
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(at::get_num_threads(), 2);  // the caller's count is restored
  // A shard's exception reaches the caller after every shard has finished.
  EXPECT_THROW(ebm::run_shards(2, [](int i) {
                 if (i == 1) throw std::runtime_error("shard 1");
               }),
               std::runtime_error);
  // A nested call finds the pool busy and runs nothing; the caller does the work.
  bool nested = true;
  ASSERT_TRUE(ebm::run_shards(2, [&](int i) {
    if (i == 0) nested = ebm::run_shards(2, [](int) {});
  }));
  EXPECT_FALSE(nested);
}

// The fast paths (a single row serial, more split into row shards in small
// passes) against the plain one: the whole batch on the caller's 2 threads,
// autograd called directly.
TEST(Parallel, EnergyGradShardsOnlyRowIndependentEnergiesAndMatchesThePlainPath) {
  ebm::set_threads(2);
  ThreadProbe whole(false), rows(true);
  ebm::energy_grad(whole, torch::rand({1, 1, 28, 28}));
  EXPECT_EQ(whole.seen, 1);  // serial
  ebm::energy_grad(whole, torch::rand({ebm::kSerialMaxRows + 1, 1, 28, 28}));
  EXPECT_EQ(whole.seen, 2);  // whole batch, intra-op threads
  EXPECT_EQ(whole.ids.size(), 1u);
  ebm::energy_grad(rows, torch::rand({2 * ebm::kShardPassRows + 3, 1, 28, 28}));
  EXPECT_EQ(rows.seen, 1);
  EXPECT_EQ(rows.ids.size(), 2u);  // two shards on two threads
  EXPECT_EQ(rows.max_rows, ebm::kShardPassRows);  // shards of 10 and 9 rows, in passes of at most 8
  torch::Tensor e;
  const auto x = torch::rand({21, 1, 28, 28});
  const auto g = ebm::energy_grad(rows, x, &e);  // shards of 11 and 10 rows in passes, put back in order
  EXPECT_TRUE(torch::allclose(g, 2 * x));
  EXPECT_TRUE(torch::allclose(e, x.flatten(1).pow(2).sum(1)));
  EXPECT_EQ(at::get_num_threads(), 2);
  ebm::energy_batched(whole, torch::rand({ebm::kSerialMaxRows + 1, 1, 28, 28}), ebm::kSerialMaxRows + 1);
  EXPECT_EQ(whole.seen, 2);
  ebm::energy_batched(whole, torch::rand({ebm::kSerialMaxRows + 3, 1, 28, 28}), ebm::kSerialMaxRows + 1);
  EXPECT_EQ(whole.seen, 1);  // the last slice has 2 rows

  torch::manual_seed(7);
  ebm::NativeModel model({{"type", "conv-ebm"}, {"width", 32}});
  model.set_training(false);
  ASSERT_TRUE(model.rows_independent());
  for (int64_t b : {1, 2, 5, 16, 37}) {
    const auto xb = torch::rand({b, 1, 28, 28});
    torch::Tensor fast_e;
    const auto fast = ebm::energy_grad(model, xb, &fast_e);
    auto xg = xb.clone().requires_grad_(true);
    const auto plain_e = model.energy(xg);
    const auto plain = torch::autograd::grad({plain_e.sum()}, {xg})[0];
    const double scale = plain.abs().max().item<double>();
    ASSERT_GT(scale, 0);
    EXPECT_LT((fast - plain).abs().max().item<double>(), 1e-5 * scale) << "batch " << b;
    EXPECT_LT((fast_e - plain_e.detach()).abs().max().item<double>(), 1e-5 * plain_e.abs().max().item<double>());
  }
  // No dropout: rows stay independent in training mode too (PCD's chains are split).
  model.set_training(true);
  EXPECT_TRUE(model.rows_independent());
  ebm::NativeModel dropout({{"type", "conv-classifier"}, {"width", 8}, {"dropout", 0.3}});
  dropout.set_training(false);
  EXPECT_TRUE(dropout.rows_independent());
  dropout.set_training(true);
  EXPECT_FALSE(dropout.rows_independent());  // a mask per call: split and whole would differ
  ebm::NativeModel no_dropout({{"type", "conv-classifier"}, {"width", 8}, {"dropout", 0.0}});
  no_dropout.set_training(true);
  EXPECT_TRUE(no_dropout.rows_independent());
}

// A deterministic chain (no noise) gives the same images, to float rounding,
// whether its gradients ran as shards on 2 threads or whole on 1. Not bit for
// bit: a kernel may order a sum differently at 3 rows than at 6 (measured:
// 4e-9 apart after 20 steps).
TEST(Parallel, DeterministicLangevinIsTheSameShardedOrNot) {
  torch::manual_seed(3);
  ebm::NativeModel model({{"type", "conv-ebm"}, {"width", 16}});
  model.set_training(false);
  const auto x0 = torch::rand({6, 1, 28, 28});
  const auto o = ebm::LangevinOptions().steps(20).step_size(0.01).noise(0);
  ebm::set_threads(2);
  const auto sharded = ebm::langevin(model, x0, o).x;
  ebm::set_threads(1);
  const auto whole = ebm::langevin(model, x0, o).x;
  ebm::set_threads(2);
  EXPECT_LT((sharded - whole).abs().max().item<double>(), 1e-6);
}

// The allocator settings (allocator.h) are values glibc accepts: mallopt
// refuses an M_MMAP_THRESHOLD above 32 MiB by returning 0, so a wrong
// constant shows up here. A sanitizer's allocator ignores them.
TEST(Allocator, TuningIsAcceptedAndCanBeTurnedOff) {
#if defined(__SANITIZE_ADDRESS__)
  const bool want = false;
#else
  const bool want = true;
#endif
  ::unsetenv("EBM_MALLOC_TUNING");
  EXPECT_EQ(ebm::tune_allocator(), want);
  ::setenv("EBM_MALLOC_TUNING", "0", 1);
  EXPECT_FALSE(ebm::tune_allocator());
  ::unsetenv("EBM_MALLOC_TUNING");
}
