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

// conv-ebm scales to other image sizes: the head reads ceil(S/8)^2 positions.
TEST(ModelRegistry, ConvEbmImageSizeScalesTheHead) {
  ebm::NativeModel m28({{"type", "conv-ebm"}, {"width", 8}});
  ebm::NativeModel m64({{"type", "conv-ebm"}, {"width", 8}, {"image_size", 64}});
  EXPECT_EQ(m28.energy(torch::rand({2, 1, 28, 28})).sizes(), torch::IntArrayRef({2}));
  EXPECT_EQ(m64.energy(torch::rand({3, 1, 64, 64})).sizes(), torch::IntArrayRef({3}));
  // The head's input: 4*width channels at 4x4 (28) and 8x8 (64) positions.
  auto head_in = [](ebm::NativeModel& m) {
    int64_t in = 0;
    for (const auto& p : m.module()->named_parameters())
      if (p.key() == "body.9.weight") in = p.value().size(1);
    return in;
  };
  EXPECT_EQ(head_in(m28), 4 * 8 * 16);
  EXPECT_EQ(head_in(m64), 4 * 8 * 64);
  EXPECT_THROW(m64.energy(torch::rand({1, 1, 28, 28})), c10::Error);
  EXPECT_THROW(ebm::NativeModel({{"type", "conv-ebm"}, {"image_size", 30}}), ebm::DataError);
  EXPECT_THROW(ebm::NativeModel({{"type", "conv-ebm"}, {"image_size", 4}}), ebm::DataError);
}
