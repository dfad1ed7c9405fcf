// TorchScript export (core/export.h, ood/detector_export.h): every shipped native
// model and ensemble, exported and loaded back, gives the source's energies (and
// logits); every exportable shipped detector gives predict()'s scores, flags and
// p-values; state dicts unpickle to the module's parameters.
// The Python side (torch.jit.load in plain PyTorch) is checked by tests/cli/export.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <dirent.h>

#include "ebm/core/common.h"
#include "ebm/core/export.h"
#include "ebm/core/models.h"
#include "ebm/core/fs.h"
#include "ebm/ood/detector_export.h"
#include "ebm/ood/ood.h"
#include "scratch_dir.h"
#include "test_util.h"

namespace ebm {
namespace {
using ebm::test::kRoot;


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
    auto native = load_model(m);
    if (native->noise_conditional()) {  // E(x, sigma) has no TorchScript translation: a clear refusal
      EXPECT_THROW(export_torchscript(m, out), UsageError);
      continue;
    }
    export_torchscript(m, out);
    auto script = load_model(out);
    EXPECT_EQ(script->num_classes(), native->num_classes());
    const auto en = native->energy(x).to(torch::kFloat64), es = script->energy(x).to(torch::kFloat64);
    EXPECT_LT(((en - es).abs() / en.abs().clamp_min(1)).max().item<double>(), 1e-5);
    if (native->num_classes() > 0) {
      EXPECT_LT((native->logits(x) - script->logits(x)).abs().max().item<double>(), 1e-5);
    }
    // The card travels inside the file, with the source named and hashed.
    torch::jit::ExtraFilesMap extra{{"card.json", ""}};
    torch::jit::load(out, c10::nullopt, extra);
    const json card = json::parse(extra["card.json"]);
    EXPECT_EQ(card["exported_from"], m);
    EXPECT_EQ(card["exported_from_sha256"], model_hash(m));
    EXPECT_EQ(card["arch"], load_card(m)["arch"]);
    // ebmkit's own layers: energy_grad may split small batches across threads (parallel.h).
    EXPECT_TRUE(script->rows_independent());
  }
}

// A TorchScript file from elsewhere might mix rows inside forward: it is
// always evaluated whole.
TEST(Export, ForeignTorchScriptIsNotSplitIntoRowShards) {
  const std::string f = std::string(EBM_SOURCE_DIR) + "/tests/fixtures/ref_energy.pt";
  ASSERT_TRUE(std::filesystem::exists(f)) << "run /usr/bin/python3 scripts/make_reference_fixtures.py";
  EXPECT_FALSE(load_model(f)->rows_independent());
}

TEST(Export, RefusesWhatHasNoTorchScriptForm) {
  const auto dir = test::scratch_dir("export", "refuse", true);
  // An exported file is TorchScript already.
  export_torchscript(kRoot + "/models/mnist-dsm", dir + "/d.pt");
  EXPECT_THROW(export_torchscript(dir + "/d.pt", dir + "/dd.pt"), UsageError);
  EXPECT_ANY_THROW(export_torchscript(dir + "/missing", dir + "/m.pt"));
  // fmnist-ood's detector scores "combined", which needs a PNG coder.
  EXPECT_THROW(export_detector(kRoot + "/models/fmnist-ood.detector.json", dir + "/det.pt", kRoot + "/models/fmnist-ood"),
               UsageError);
  EXPECT_THROW(export_state_dict(kRoot + "/models/mnist-ood", dir + "/sd.pt"), UsageError);
}

// 64 inputs without a dataset: noise, blank, white, blobs, and (scaled) noise.
torch::Tensor probe_images() {
  torch::manual_seed(1);
  auto x = torch::rand({64, 1, 28, 28});
  x[0].zero_();
  x[1].fill_(1);
  const auto g = torch::linspace(-1, 1, 28);
  for (int64_t i = 2; i < 32; ++i)
    x[i][0] = torch::exp(-(g.view({28, 1}).pow(2) + g.view({1, 28}).pow(2)) * double(i % 16 + 1));
  return x;
}

TEST(Export, EnsemblesGiveTheirEnergies) {
  const auto dir = test::scratch_dir("export", "ensemble", true);
  const auto x = probe_images();
  torch::NoGradGuard ng;
  int ensembles = 0;
  for (const std::string name : {"mnist-ood", "fmnist-ood"}) {
    SCOPED_TRACE(name);
    const std::string m = kRoot + "/models/" + name;
    if (load_card(m).value("format", "native") != "ensemble") continue;  // fmnist-ood is a native model
    ++ensembles;
    export_torchscript(m, dir + "/e.pt");
    auto native = load_model(m);
    auto script = load_model(dir + "/e.pt");
    EXPECT_EQ(script->num_classes(), 0);
    const auto en = native->energy(x).to(torch::kFloat64), es = script->energy(x).to(torch::kFloat64);
    EXPECT_LT(((en - es).abs() / en.abs().clamp_min(1)).max().item<double>(), 1e-5);
  }
  EXPECT_GE(ensembles, 1);
}

// Every shipped detector with a TorchScript form: the exported module's
// (score, flag, p_value) against ood.h's predict() on the same images.
TEST(Export, DetectorsCarryThresholdAndPValues) {
  const auto dir = test::scratch_dir("export", "detector", true);
  auto x = probe_images();
  int exported = 0;
  DIR* dd = opendir((kRoot + "/models").c_str());
  ASSERT_NE(dd, nullptr);
  std::vector<std::string> detectors;
  while (dirent* e = readdir(dd)) {
    const std::string name = e->d_name;
    if (name.size() > 14 && name.substr(name.size() - 14) == ".detector.json") detectors.push_back(name);
  }
  closedir(dd);
  ASSERT_GE(detectors.size(), 3u);
  for (const auto& name : detectors) {
    SCOPED_TRACE(name);
    const std::string path = kRoot + "/models/" + name;
    ASSERT_TRUE(is_detector_file(path));
    const Detector d = Detector::load(path);
    const std::string score = canonical_score(d.score);
    // Detectors record their model relative to the repository root; tests run elsewhere.
    const std::string model_path = d.model[0] == '/' ? d.model : kRoot + "/" + d.model;
    if (score != "energy" && score != "msp" && score != "maxlogit") {
      EXPECT_THROW(export_detector(path, dir + "/d.pt", model_path), UsageError);
      continue;
    }
    export_detector(path, dir + "/d.pt", model_path);
    ++exported;
    auto model = load_model(model_path);
    const auto preds = predict(d, *model, x);
    torch::jit::ExtraFilesMap extra{{"card.json", ""}, {"detector.json", ""}};
    auto m = torch::jit::load(dir + "/d.pt", c10::nullopt, extra);
    EXPECT_EQ(json::parse(extra["detector.json"])["threshold"].get<double>(), d.threshold);
    EXPECT_EQ(m.attr("threshold").toDouble(), d.threshold);
    torch::NoGradGuard ng;
    const auto out = m.forward({x}).toTuple()->elements();
    ASSERT_EQ(out.size(), 3u);
    const auto s = out[0].toTensor(), flag = out[1].toTensor(), p = out[2].toTensor();
    ASSERT_EQ(s.size(0), 64);
    for (int64_t i = 0; i < 64; ++i) {
      const auto& want = preds[size_t(i)];
      EXPECT_NEAR(s[i].item<double>(), want.score, 1e-5 * std::max(1.0, std::abs(want.score))) << i;
      // p-values and flags follow from the score; compare them where the
      // score is not within rounding of a validation score or the threshold.
      EXPECT_NEAR(p[i].item<double>(), d.p_value(s[i].item<double>()), 1e-12) << i;
      EXPECT_EQ(flag[i].item<bool>(), d.is_ood(s[i].item<double>())) << i;
      if (std::abs(want.score - d.threshold) > 1e-4) {
        EXPECT_EQ(flag[i].item<bool>(), want.ood) << i;
      }
    }
  }
  EXPECT_GE(exported, 2);
}

TEST(Export, StateDictIsThePickledParameters) {
  const auto dir = test::scratch_dir("export", "state-dict", true);
  const std::string m = kRoot + "/models/mnist-clf";
  export_state_dict(m, dir + "/sd.pt");
  const std::string bytes = read_file(dir + "/sd.pt");
  const auto dict = torch::jit::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
  auto native = std::dynamic_pointer_cast<NativeModel>(load_model(m));
  ASSERT_TRUE(native);
  const auto params = native->module()->named_parameters();
  EXPECT_EQ(int64_t(dict.size()), int64_t(params.size()));
  for (const auto& p : params) {
    ASSERT_TRUE(dict.contains(p.key())) << p.key();
    EXPECT_TRUE(torch::equal(dict.at(p.key()).toTensor(), p.value())) << p.key();
  }
}

}  // namespace
}  // namespace ebm
