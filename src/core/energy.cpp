#include "ebm/core/energy.h"

#include "ebm/core/parallel.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

namespace ebm {

torch::Tensor free_energy(const torch::Tensor& logits, double temperature) {
  TORCH_CHECK(temperature > 0, "temperature must be > 0, got ", temperature);
  TORCH_CHECK(logits.dim() == 2, "free_energy wants logits [B,K], got ", logits.sizes());
  return -temperature * torch::logsumexp(logits / temperature, 1);
}

namespace {
// grad_x E(x) on the calling thread, as energy_grad() promises.
torch::Tensor grad_here(Energy& e, const torch::Tensor& x, torch::Tensor* energy_out) {
  // Only x needs a gradient: torch::autograd::grad with inputs={x} never
  // touches the parameters' .grad fields, and the graph is freed on return.
  auto xg = x.detach().requires_grad_(true);
  // Autograd on for the forward pass AND the sum, so callers may hold a NoGradGuard.
  torch::AutoGradMode enable(true);
  const torch::Tensor en = e.energy(xg);
  TORCH_CHECK(en.dim() == 1 && en.size(0) == x.size(0), "energy must return [B] = [", x.size(0),
              "], got ", en.sizes());
  auto g = torch::autograd::grad({en.sum()}, {xg}, {}, /*retain_graph=*/false,
                                 /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!g.defined()) g = torch::zeros_like(x);
  if (energy_out) *energy_out = en.detach();
  return g;
}
}  // namespace

torch::Tensor energy_grad(Energy& e, const torch::Tensor& x, torch::Tensor* energy_out) {
  const int64_t rows = x.dim() > 0 ? x.size(0) : 0;
  const int threads = at::get_num_threads();
  const int n = e.rows_independent() ? shards_for(rows, threads) : 1;
  if (n > 1) {
    // Each shard's passes in row order; one concatenation at the end.
    std::vector<std::vector<torch::Tensor>> g(n), en(n);
    const bool ran = run_shards(n, [&](int i) {
      const RowRange r = shard_rows(rows, n, i);
      for (int64_t b = r.begin; b < r.begin + r.length; b += kShardPassRows) {
        en[i].emplace_back();
        g[i].push_back(grad_here(e, x.narrow(0, b, std::min(kShardPassRows, r.begin + r.length - b)), &en[i].back()));
      }
    });
    if (ran) {
      std::vector<torch::Tensor> gs, es;
      for (int i = 0; i < n; ++i) {
        gs.insert(gs.end(), g[i].begin(), g[i].end());
        es.insert(es.end(), en[i].begin(), en[i].end());
      }
      if (energy_out) *energy_out = torch::cat(es);
      return torch::cat(gs);
    }
  }
  ScopedIntraOpThreads serial(intra_op_threads_for(rows, threads));
  return grad_here(e, x, energy_out);
}

torch::Tensor map_batched(const torch::Tensor& x, int64_t batch,
                          const std::function<torch::Tensor(const torch::Tensor&)>& f) {
  TORCH_CHECK(batch > 0, "map_batched: batch must be > 0, got ", batch);
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += batch) {
    const int64_t rows = std::min(batch, x.size(0) - i);
    ScopedIntraOpThreads serial(intra_op_threads_for(rows, at::get_num_threads()));
    out.push_back(f(x.narrow(0, i, rows)));
  }
  return out.empty() ? torch::empty({0}) : torch::cat(out);
}

torch::Tensor energy_batched(Energy& e, const torch::Tensor& x, int64_t batch) {
  return map_batched(x, batch, [&e](const torch::Tensor& b) { return e.energy(b); });
}

GaussianEnergy::GaussianEnergy(torch::Tensor mu, double sigma) : mu_(std::move(mu)), sigma_(sigma) {
  TORCH_CHECK(sigma > 0, "GaussianEnergy: sigma must be > 0, got ", sigma);
}

torch::Tensor GaussianEnergy::energy(const torch::Tensor& x) {
  return (x - mu_).pow(2).flatten(1).sum(1) / (2 * sigma_ * sigma_);
}

std::string GaussianEnergy::describe() const {
  std::ostringstream s;
  s << "gaussian(sigma=" << sigma_ << ")";
  return s.str();
}

EnergyAtSigma::EnergyAtSigma(Energy& inner, double sigma) : inner_(inner), sigma_(sigma) {
  TORCH_CHECK(sigma > 0 && std::isfinite(sigma), "EnergyAtSigma: sigma must be a finite number > 0, got ", sigma);
}

torch::Tensor EnergyAtSigma::energy(const torch::Tensor& x) {
  return inner_.energy_at(x, torch::full({x.size(0)}, sigma_, x.options()));
}

std::string EnergyAtSigma::describe() const {
  std::ostringstream s;
  s << inner_.describe() << " at sigma=" << sigma_;
  return s.str();
}

}  // namespace ebm
