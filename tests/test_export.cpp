// TorchScript export (core/export.h): every shipped native model, exported and
// loaded back as a TorchScript model, gives the native energies (and logits).
// The Python side (torch.jit.load in plain PyTorch) is checked by tests/cli/export.sh.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <dirent.h>

#include "ebm/core/common.h"
#include "ebm/core/export.h"
#include "ebm/core/models.h"
#include "scratch_dir.h"

namespace ebm {
namespace {

const std::string kRoot = EBM_SOURCE_DIR;

// Shipped models whose card says native (weights of a built-in architecture).
std::vector<std::string> native_models() {
  std::vector<std::string> out;
  DIR* d = opendir((kRoot + "/models").c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name, path = kRoot + "/models/" + name;
    if (name[0] == '.' || name.find(".json") != std::string::npos) continue;
    try {
      const json card = load_card(path);
      if (card.value("format", "native") == "native" && card.contains("arch")) out.push_back(path);
    } catch (const std::exception&) {
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Export, EveryShippedNativeModelGivesTheSameEnergies) {
  const auto models = native_models();
  ASSERT_GE(models.size(), 8u) << "expected the shipped zoo under models/";
  const auto dir = test::scratch_dir("export", "all", true);
  torch::manual_seed(0);
  // 64 inputs: uniform noise, blank, and smooth blobs (no dataset needed).
  auto x = torch::rand({64, 1, 28, 28});
  x[0].zero_();
  x[1].fill_(1);
  const auto g = torch::linspace(-1, 1, 28);
  for (int64_t i = 2; i < 16; ++i)
    x[i][0] = torch::exp(-(g.view({28, 1}).pow(2) + g.view({1, 28}).pow(2)) * double(i));
  torch::NoGradGuard ng;
  for (const auto& m : models) {
    SCOPED_TRACE(m);
    const std::string out = dir + "/m.pt";
    export_torchscript(m, out);
    auto native = load_model(m);
    auto script = load_model(out);
    EXPECT_EQ(script->num_classes(), native->num_classes());
    const auto en = native->energy(x).to(torch::kFloat64), es = script->energy(x).to(torch::kFloat64);
    EXPECT_LT(((en - es).abs() / en.abs().clamp_min(1)).max().item<double>(), 1e-5);
    if (native->num_classes() > 0)
      EXPECT_LT((native->logits(x) - script->logits(x)).abs().max().item<double>(), 1e-5);
    // The card travels inside the file, with the source named and hashed.
    torch::jit::ExtraFilesMap extra{{"card.json", ""}};
    torch::jit::load(out, c10::nullopt, extra);
    const json card = json::parse(extra["card.json"]);
    EXPECT_EQ(card["exported_from"], m);
    EXPECT_EQ(card["exported_from_sha256"], model_hash(m));
    EXPECT_EQ(card["arch"], load_card(m)["arch"]);
  }
}

TEST(Export, RefusesWhatIsNotANativeModel) {
  const auto dir = test::scratch_dir("export", "refuse", true);
  // An ensemble is a card without weights.
  EXPECT_THROW(export_torchscript(kRoot + "/models/mnist-ood", dir + "/e.pt"), UsageError);
  // An exported file is TorchScript already.
  export_torchscript(kRoot + "/models/mnist-dsm", dir + "/d.pt");
  EXPECT_THROW(export_torchscript(dir + "/d.pt", dir + "/dd.pt"), UsageError);
  EXPECT_ANY_THROW(export_torchscript(dir + "/missing", dir + "/m.pt"));
}

}  // namespace
}  // namespace ebm
