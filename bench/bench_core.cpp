// Micro-benchmarks of the shared mechanisms (Google Benchmark; never in ctest).
// Why these: every application's cost is (energy forward+backward) x (Langevin
// steps), so these two numbers predict training, sampling and restoration time.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "ebm/core/allocator.h"
#include "ebm/core/langevin.h"
#include "ebm/core/models.h"

namespace {

void BM_EnergyGrad(benchmark::State& st) {
  at::set_num_threads(1);
  ebm::NativeModel m({{"type", st.range(1) ? "conv-classifier" : "conv-ebm"}, {"width", st.range(0)}});
  m.set_training(false);
  auto x = torch::rand({64, 1, 28, 28});
  for (auto _ : st) benchmark::DoNotOptimize(ebm::energy_grad(m, x));
  st.SetItemsProcessed(st.iterations() * 64);
}
BENCHMARK(BM_EnergyGrad)->ArgsProduct({{8, 16, 32}, {0, 1}})->Unit(benchmark::kMillisecond);

void BM_LangevinStep(benchmark::State& st) {
  at::set_num_threads(1);
  ebm::NativeModel m({{"type", "conv-ebm"}, {"width", 16}});
  auto x = torch::rand({64, 1, 28, 28});
  auto o = ebm::LangevinOptions().steps(10);
  for (auto _ : st) benchmark::DoNotOptimize(ebm::langevin(m, x, o).x);
  st.SetItemsProcessed(st.iterations() * 64 * 10);
}
BENCHMARK(BM_LangevinStep)->Unit(benchmark::kMillisecond);

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
