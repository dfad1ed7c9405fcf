// core/models.h model registry: built-in formats, a user-registered format
// loaded through load_model() with its card attached, unknown formats refused
// with a message that lists the known ones, and model_hash() hashing the
// format's content file (checked against sha256 of the bytes).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "scratch_dir.h"

using namespace ebm;

TEST(ModelRegistry, BuiltinFormatsAreRegistered) {
  const auto names = model_formats();
  for (const char* f : {"native", "torchscript", "ensemble"})
    EXPECT_NE(std::find(names.begin(), names.end(), f), names.end()) << f;
}

TEST(ModelRegistry, NativeModelCarriesItsCardAndHashIsSha256OfWeights) {
  const std::string d = test::scratch_dir("registry_", "native", true);
  torch::manual_seed(1);
  NativeModel m(json{{"type", "conv-ebm"}, {"width", 4}});
  json card = m.card();
  card["task"] = "dsm";
  m.set_card(card);
  save_model(d + "/m", m);
  auto loaded = load_model(d + "/m");
  EXPECT_EQ(loaded->card().value("task", ""), "dsm");
  EXPECT_EQ(loaded->card()["arch"]["width"], 4);
  EXPECT_EQ(model_hash(d + "/m"), sha256_file(d + "/m/weights.pt"));
  EXPECT_EQ(model_hash(d + "/m").size(), 64u);
  const json prov = report_provenance("ebm x", {d + "/m"});
  EXPECT_EQ(prov["command"], "ebm x");
  EXPECT_EQ(prov["models"][0]["sha256"], model_hash(d + "/m"));
}

TEST(ModelRegistry, UserFormatLoadsThroughLoadModel) {
  const std::string d = test::scratch_dir("registry_", "user", true);
  make_dirs(d + "/g");
  write_file_atomic(d + "/g/card.json", R"({"format":"test-gaussian","sigma":2.0})");
  register_model_format("test-gaussian",
                        {[](const std::string&, const json& card) -> EnergyPtr {
                           return std::make_shared<GaussianEnergy>(torch::zeros({1, 2, 2}),
                                                                   card.at("sigma").get<double>());
                         },
                         [](const std::string& path) { return path + "/card.json"; }});
  auto e = load_model(d + "/g");
  EXPECT_EQ(e->card()["sigma"], 2.0);
  // E(x) = ||x||^2 / (2 sigma^2) = 4 * 1 / 8 for x = ones.
  EXPECT_NEAR(e->energy(torch::ones({1, 1, 2, 2})).item<double>(), 0.5, 1e-6);
  EXPECT_EQ(model_hash(d + "/g"), sha256_file(d + "/g/card.json"));
}

TEST(ModelRegistry, UnknownFormatNamesTheKnownOnes) {
  const std::string d = test::scratch_dir("registry_", "unknown", true);
  make_dirs(d + "/u");
  write_file_atomic(d + "/u/card.json", R"({"format":"no-such-format"})");
  try {
    load_model(d + "/u");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no-such-format"), std::string::npos) << msg;
    EXPECT_NE(msg.find("native"), std::string::npos) << msg;
  }
  EXPECT_THROW(register_model_format("", {}), UsageError);
}
