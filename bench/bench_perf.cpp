// bench_perf: the workloads of the performance table (bench/perf/run.sh, which
// runs the PyTorch-Python peer bench/perf/peer.py on the same TorchScript model
// in alternating rounds and writes results/bench/bench.{json,md}).
//
// Why these workloads: every application's cost is (energy forward + input
// gradient) x (Langevin steps) at some batch size, plus scoring (forward only)
// and training (PCD). The compute limit is torch::mm 2048^2 at the same thread
// count, measured here; each workload reports the FLOPs of one item counted
// from the architecture (flops_per_item), so run.sh can state the fraction of
// the limit it reaches.
//
// Env: EBM_BENCH_MODEL (a native conv-ebm folder; default models/mnist-dsm),
//      EBM_BENCH_SCRIPT (its `ebm export` TorchScript file, for the like-for-like
//      rows), EBM_BENCH_THREADS (default 2).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>

#include "ebm/core/allocator.h"
#include "ebm/core/langevin.h"
#include "ebm/core/models.h"
#include "ebm/defend/purify.h"
#include "ebm/train/train.h"

namespace {

int threads() {
  const char* t = std::getenv("EBM_BENCH_THREADS");
  return t ? std::atoi(t) : 2;
}
std::string model_path() {
  const char* m = std::getenv("EBM_BENCH_MODEL");
  return m ? m : std::string(EBM_SOURCE_DIR) + "/models/mnist-dsm";
}

// FLOPs of one forward pass of a native model on one [1,1,28,28] image:
// 2*Cin*Cout*kh*kw*Hout*Wout per convolution, 2*in*out per linear layer
// (activations and pooling are not counted). The input-gradient backward of a
// convolution or linear layer costs the same again (no parameter gradients), so
// a Langevin step is 2x this and a PCD step's parameter gradients add 1x more.
double forward_flops(ebm::NativeModel& m, int64_t size = 28) {
  namespace nn = torch::nn;
  torch::NoGradGuard ng;
  double flops = 0;
  auto h = torch::rand({1, 1, size, size}) * 2 - 1;
  std::function<void(nn::Module&)> walk = [&](nn::Module& mod) {
    if (auto* c = mod.as<nn::Conv2d>()) {
      auto out = c->forward(h);
      const auto& w = c->weight;
      flops += 2.0 * double(w.size(0) * w.size(1) * w.size(2) * w.size(3) * out.size(2) * out.size(3));
      h = out;
    } else if (auto* l = mod.as<nn::Linear>()) {
      if (h.dim() > 2) h = h.flatten(1);
      flops += 2.0 * double(l->weight.size(0) * l->weight.size(1));
      h = l->forward(h);
    } else if (mod.as<nn::Flatten>()) {
      h = h.flatten(1);
    } else if (mod.children().empty()) {
      // activations and the like keep the shape
    } else {
      for (auto& child : mod.children()) walk(*child);
    }
  };
  walk(*m.module());
  return flops;
}

std::shared_ptr<ebm::NativeModel> native() {
  auto m = std::dynamic_pointer_cast<ebm::NativeModel>(ebm::load_model(model_path()));
  if (!m) throw std::runtime_error("EBM_BENCH_MODEL must be a native model folder");
  m->set_training(false);
  return m;
}

// The TorchScript export of the same model ($EBM_BENCH_SCRIPT), the file the
// Python peer runs; null (and the benchmark skipped) when it is not set.
ebm::EnergyPtr script(benchmark::State& st) {
  const char* s = std::getenv("EBM_BENCH_SCRIPT");
  if (!s) {
    st.SkipWithError("EBM_BENCH_SCRIPT not set");
    return nullptr;
  }
  auto e = ebm::load_model(s);
  e->set_training(false);
  return e;
}

void BM_MatmulLimit(benchmark::State& st) {
  at::set_num_threads(threads());
  auto a = torch::rand({2048, 2048}), b = torch::rand({2048, 2048});
  for (auto _ : st) benchmark::DoNotOptimize(torch::mm(a, b));
  st.counters["gflops"] = benchmark::Counter(2.0 * 2048 * 2048 * 2048 * double(st.iterations()) / 1e9,
                                             benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MatmulLimit)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// 10 Langevin steps (step 0.01, noise 0.005, clamp to [0,1]: the reference's
// constants) on a batch; items = image-steps. range(1): 0 native, 1 TorchScript.
void BM_Langevin(benchmark::State& st) {
  at::set_num_threads(threads());
  const int64_t b = st.range(0), steps = 10;
  auto nat = native();
  const ebm::EnergyPtr e = st.range(1) ? script(st) : nat;
  if (!e) return;
  auto x = torch::rand({b, 1, 28, 28});
  const auto o = ebm::LangevinOptions().steps(steps).step_size(0.01).noise(0.005);
  auto gen = at::detail::createCPUGenerator(0);
  for (auto _ : st) benchmark::DoNotOptimize(ebm::langevin(*e, x, o, {}, &gen).x);
  st.SetItemsProcessed(st.iterations() * b * steps);
  st.counters["flops_per_item"] = 2 * forward_flops(*nat);
}
BENCHMARK(BM_Langevin)
    ->ArgsProduct({{1, 4, 8, 16, 64, 256}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

// The same Langevin steps on 64x64 images through the same layers scaled to
// that size (conv-ebm, width 32, image_size 64; untrained, seed 0: the cost
// does not depend on the weights). The peer builds the same architecture.
void BM_Langevin64(benchmark::State& st) {
  at::set_num_threads(threads());
  const int64_t b = st.range(0), steps = 10;
  torch::manual_seed(0);
  ebm::NativeModel m({{"type", "conv-ebm"}, {"width", 32}, {"image_size", 64}});
  m.set_training(false);
  auto x = torch::rand({b, 1, 64, 64});
  const auto o = ebm::LangevinOptions().steps(steps).step_size(0.01).noise(0.005);
  auto gen = at::detail::createCPUGenerator(0);
  for (auto _ : st) benchmark::DoNotOptimize(ebm::langevin(m, x, o, {}, &gen).x);
  st.SetItemsProcessed(st.iterations() * b * steps);
  st.counters["flops_per_item"] = 2 * forward_flops(m, 64);
}
BENCHMARK(BM_Langevin64)->Arg(1)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// Scoring: one forward pass of 256 images without autograd; items = images.
void BM_Score(benchmark::State& st) {
  at::set_num_threads(threads());
  auto nat = native();
  const ebm::EnergyPtr e = st.range(0) ? script(st) : nat;
  if (!e) return;
  auto x = torch::rand({256, 1, 28, 28});
  for (auto _ : st) {
    torch::InferenceMode im;
    benchmark::DoNotOptimize(e->energy(x));
  }
  st.SetItemsProcessed(st.iterations() * 256);
  st.counters["flops_per_item"] = forward_flops(*nat);
}
BENCHMARK(BM_Score)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// One persistent-CD training step at batch 64 with 20 SGLD steps, as train()
// runs it (replay buffer, langevin, pcd_loss, Adam); items = images trained on.
void BM_Pcd20(benchmark::State& st) {
  at::set_num_threads(threads());
  auto m = native();
  auto gen = at::detail::createCPUGenerator(0);
  ebm::ReplayBuffer buf(1000, {1, 28, 28}, gen);
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-4).betas({0.0, 0.999}));
  auto data = torch::rand({64, 1, 28, 28});
  const auto sg = ebm::LangevinOptions().steps(20).step_size(0.01).noise(0.005);
  for (auto _ : st) {
    torch::Tensor idx;
    auto start = buf.sample(64, 0.0, gen, &idx);
    auto neg = ebm::langevin(*m, start, sg, {}, &gen).x;
    buf.update(idx, neg);
    auto loss = ebm::pcd_loss(m->energy(data), m->energy(neg), 0.1);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  st.SetItemsProcessed(st.iterations() * 64);
  // 20 Langevin steps (2x forward each) + the loss's two forwards and their parameter backward (~2x each).
  st.counters["flops_per_item"] = forward_flops(*m) * (20 * 2 + 2 * 3);
}
BENCHMARK(BM_Pcd20)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// Purification before classification as `ebm defend eval` and /v1/guard run
// it: the shipped purifier (models/mnist-purifier, its card's settings: 10
// steps x 4 draws, no Langevin noise) then models/mnist-clf; items = images.
// range(1): 0 the draws one after another (purify() then the classifier, four
// times: the plain path and the oracle of the test), 1 purified_logits(), which
// runs the four draws as one batch.
void BM_Purify(benchmark::State& st) {
  at::set_num_threads(threads());
  const int64_t b = st.range(0);
  const std::string root = std::string(EBM_SOURCE_DIR) + "/models/";
  auto ebm_model = std::dynamic_pointer_cast<ebm::NativeModel>(ebm::load_model(root + "mnist-purifier"));
  auto clf = std::dynamic_pointer_cast<ebm::NativeModel>(ebm::load_model(root + "mnist-clf"));
  if (!ebm_model || !clf) {
    st.SkipWithError("models/mnist-purifier and models/mnist-clf must be native models");
    return;
  }
  ebm_model->set_training(false);
  clf->set_training(false);
  const auto o = ebm::purify_options_from_card(ebm_model->card());
  auto x = torch::rand({b, 1, 28, 28});
  auto gen = at::detail::createCPUGenerator(0);
  for (auto _ : st) {
    if (st.range(1)) {
      benchmark::DoNotOptimize(ebm::purified_logits(*clf, *ebm_model, x, o, gen));
    } else {
      torch::Tensor sum;
      for (int64_t k = 0; k < o.draws(); ++k) {
        auto xp = ebm::purify(*ebm_model, x, o, gen);
        torch::NoGradGuard ng;
        auto z = clf->logits(xp);
        sum = k ? sum + z : z;
      }
      benchmark::DoNotOptimize(sum);
    }
  }
  st.SetItemsProcessed(st.iterations() * b);
  // The purifier's Langevin steps only: the classifier's one forward per draw
  // is a few percent of the work, and forward_flops() reads conv energies only.
  st.counters["flops_per_item"] = double(o.draws()) * 2.0 * double(o.steps()) * forward_flops(*ebm_model);
}
BENCHMARK(BM_Purify)
    ->ArgsProduct({{1, 16, 64}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

}  // namespace

// BENCHMARK_MAIN, with the allocator settings the `ebm` CLI runs under.
int main(int argc, char** argv) {
  ebm::tune_allocator();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
