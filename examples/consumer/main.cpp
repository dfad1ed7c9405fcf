// consumer: extends ebmkit with an energy of its own and samples from it with
// the library's Langevin sampler. Exits 0 when the samples have the target's
// mean and variance, 1 otherwise.
//
// The energy is a shifted quadratic, E(x) = sum (x - m)^2 / (2 s^2), so its
// Boltzmann density is N(m, s^2 I): unadjusted Langevin with noise
// sqrt(2 * step) and a small step must recover m and s^2.
#include <ebm/core/energy.h>
#include <ebm/core/langevin.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>

class ShiftedQuadratic : public ebm::Energy {
 public:
  ShiftedQuadratic(double m, double s) : m_(m), s_(s) {}
  torch::Tensor energy(const torch::Tensor& x) override {  // x[B,C,H,W] -> [B]
    return (x - m_).pow(2).flatten(1).sum(1) / (2 * s_ * s_);
  }
  std::string describe() const override { return "shifted-quadratic"; }

 private:
  double m_, s_;
};

int main() {
  torch::set_num_threads(1);
  const double m = 0.3, s = 0.1, step = 1e-3;
  ShiftedQuadratic e(m, s);
  const double e0 = e.energy(torch::zeros({1, 1, 2, 2})).item<double>();
  std::printf("E(0) = %.6f (expected %.6f)\n", e0, 4 * m * m / (2 * s * s));

  auto o = ebm::LangevinOptions().steps(2000).step_size(step).noise(std::sqrt(2 * step)).clamp(false).seed(7);
  auto r = ebm::langevin(e, torch::zeros({512, 1, 2, 2}), o);
  const double mean = r.x.mean().item<double>(), var = r.x.var().item<double>();
  std::printf("samples: mean %.4f (target %.4f), variance %.5f (target %.5f)\n", mean, m, var, s * s);
  const bool ok = std::fabs(e0 - 4 * m * m / (2 * s * s)) < 1e-5 && std::fabs(mean - m) < 0.01 &&
                  std::fabs(var / (s * s) - 1) < 0.1;
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
