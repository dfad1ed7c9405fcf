// Ensemble models (ensemble.h): the standardisation against a brute-force
// mean/sd of each member's energy, the loaded energy against the formula
// sum_i w_i (E_i - mean_i)/sd_i evaluated by hand, relative member paths,
// hash pinning, and bad options.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include "scratch_dir.h"
#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/ood/ensemble.h"
#include "ebm/core/models.h"
#include "test_util.h"

using namespace ebm;

namespace {
using ebm::test::have_mnist;


// A small untrained native model saved under dir/name; seed fixes its weights.
std::string save_tiny(const std::string& dir, const std::string& name, bool classifier, uint64_t seed) {
  torch::manual_seed(seed);
  json arch = {{"type", classifier ? "conv-classifier" : "conv-ebm"}, {"width", 4}};
  if (classifier) arch["num_classes"] = 10;
  NativeModel m(arch);
  m.set_training(false);
  {
    // Untrained, the energy barely varies between images, and standardising
    // by a tiny sd would amplify float32 rounding; larger weights spread it.
    torch::NoGradGuard ng;
    for (auto& p : m.parameters()) p.mul_(3.0);
  }
  if (classifier) m.temperature = 2.0;  // the member's free energy uses its card's T
  const std::string path = dir + "/" + name;
  save_model(path, m);
  return path;
}

torch::Tensor val_images(int64_t n) {
  DatasetOptions d;
  d.split = "val";
  d.n = n;
  return load_dataset("mnist", d).images;
}

}  // namespace

TEST(Ensemble, StandardisedSumMatchesBruteForce) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string dir = ebm::test::scratch_dir("ebm_ens_", "sum", true);
  const std::string a = save_tiny(dir, "a", false, 1), b = save_tiny(dir, "b", true, 2);
  const std::string out = dir + "/ens";
  auto o = EnsembleOptions().members({a, b}).weights({1.0, 0.5}).data("mnist").split("val").n(64).batch(16);
  json card = fit_ensemble(o, out);
  card["default_score"] = "energy";
  save_ensemble(out, card);

  // Standardisation: mean and sd (unbiased) of each member's energy on the same 64 val images.
  const auto x = val_images(64);
  auto ea = energy_batched(*load_model(a), x).to(torch::kFloat64);
  auto eb = energy_batched(*load_model(b), x).to(torch::kFloat64);
  ASSERT_EQ(card["members"].size(), 2u);
  EXPECT_NEAR(card["members"][0]["shift"].get<double>(), ea.mean().item<double>(), 1e-4);
  EXPECT_NEAR(card["members"][0]["scale"].get<double>(), ea.std().item<double>(), 1e-4);
  EXPECT_NEAR(card["members"][1]["shift"].get<double>(), eb.mean().item<double>(), 1e-4);
  EXPECT_NEAR(card["members"][1]["scale"].get<double>(), eb.std().item<double>(), 1e-4);
  EXPECT_EQ(card["members"][0]["model"], "../a");  // relative to the ensemble folder
  EXPECT_EQ(card["fit"]["split"], "val");
  EXPECT_EQ(card["fit"]["n"], 64);

  // The loaded ensemble is the formula, image by image, and is not a classifier.
  auto e = load_model(out);
  EXPECT_EQ(e->num_classes(), 0);
  const auto xs = x.narrow(0, 0, 8);
  auto got = energy_batched(*e, xs).to(torch::kFloat64);
  auto want = (ea.narrow(0, 0, 8) - ea.mean()) / ea.std() + 0.5 * (eb.narrow(0, 0, 8) - eb.mean()) / eb.std();
  EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-4)) << (got - want);
  EXPECT_GT(eb.std().item<double>(), 1e-2);  // the spread the tolerance assumes
  // Standardised on these images, member a's term has mean 0 over them.
  EXPECT_NEAR(((energy_batched(*e, x).to(torch::kFloat64) - 0.5 * (eb - eb.mean()) / eb.std())).mean().item<double>(),
              0.0, 1e-4);
}

TEST(Ensemble, MembersArePinnedByHash) {
  if (!have_mnist()) GTEST_SKIP() << "no datasets in " << data_dir();
  at::set_num_threads(1);
  const std::string dir = ebm::test::scratch_dir("ebm_ens_", "pin", true);
  const std::string a = save_tiny(dir, "a", false, 3);
  const std::string out = dir + "/ens";
  save_ensemble(out, fit_ensemble(EnsembleOptions().members({a}).data("mnist").n(16), out));
  const std::string h = model_hash(out);
  EXPECT_NO_THROW(load_model(out));
  // The ensemble's hash is its card's: it changes with a member's weight.
  json card = load_card(out);
  card["members"][0]["weight"] = 2.0;
  save_ensemble(out, card);
  EXPECT_NE(model_hash(out), h);
  // Replacing the member's weights makes the stored standardisation stale.
  save_tiny(dir, "a", false, 4);
  EXPECT_THROW(load_model(out), DataError);
}

TEST(Ensemble, RejectsBadOptions) {
  EXPECT_THROW(fit_ensemble(EnsembleOptions(), "/tmp/x"), UsageError);  // no members
  EXPECT_THROW(fit_ensemble(EnsembleOptions().members({"a", "b"}).weights({1.0}), "/tmp/x"), UsageError);
  EXPECT_THROW(fit_ensemble(EnsembleOptions().members({"a"}).split("test"), "/tmp/x"), UsageError);
  EXPECT_THROW(fit_ensemble(EnsembleOptions().members({"a"}), ""), UsageError);
}

TEST(Ensemble, ShippedMnistOodLoadsAndMatchesItsDetector) {
  // models/mnist-ood is an ensemble: its members' hashes must match the
  // shipped members, and its detector must have been calibrated on it.
  const std::string m = std::string(EBM_SOURCE_DIR) + "/models/mnist-ood";
  ASSERT_EQ(load_card(m).value("format", ""), "ensemble");
  auto e = load_model(m);
  EXPECT_EQ(e->num_classes(), 0);
  auto det = json::parse(read_file(m + ".detector.json"));
  EXPECT_EQ(det["model_hash"].get<std::string>(), model_hash(m));
}
