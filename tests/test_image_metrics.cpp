// PSNR / SSIM against scikit-image reference values
// (tests/fixtures/image_metrics.json from scripts/make_image_metric_fixtures.py).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/metrics/image_metrics.h"

using namespace ebm;

TEST(ImageMetrics, MatchScikitImage) {
  auto fx = nlohmann::json::parse(read_file(std::string(EBM_SOURCE_DIR) + "/tests/fixtures/image_metrics.json"));
  ASSERT_GE(fx["cases"].size(), 10u);
  for (auto& c : fx["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto ref = torch::tensor(c["ref"].get<std::vector<float>>()).view({1, 1, 28, 28});
    auto x = torch::tensor(c["x"].get<std::vector<float>>()).view({1, 1, 28, 28});
    EXPECT_NEAR(psnr(x, ref)[0].item<double>(), c["psnr"].get<double>(), 1e-4);
    EXPECT_NEAR(ssim(x, ref)[0].item<double>(), c["ssim"].get<double>(), 1e-4);
  }
}

TEST(ImageMetrics, HandValuesAndMask) {
  auto ref = torch::zeros({2, 1, 8, 8});
  auto x = ref.clone();
  x[0].fill_(0.1);                                        // MSE 0.01 -> 20 dB
  x[1].narrow(1, 0, 4).fill_(0.1);                        // MSE 0.005 -> ~23.01 dB
  auto p = psnr(x, ref);
  EXPECT_NEAR(p[0].item<double>(), 20.0, 1e-5);  // 0.1f is not exactly 0.1
  EXPECT_NEAR(p[1].item<double>(), 10 * std::log10(200.0), 1e-5);
  auto mask = torch::zeros({1, 1, 8, 8});
  mask.narrow(2, 0, 4).fill_(1);                          // only the top half counts
  auto pm = psnr_masked(x, ref, mask);
  EXPECT_NEAR(pm[1].item<double>(), 20.0, 1e-5);          // top half has MSE 0.01
  EXPECT_NEAR(ssim(ref + 0.5, ref + 0.5)[0].item<double>(), 1.0, 1e-12);
  EXPECT_THROW(ssim(torch::zeros({1, 1, 5, 5}), torch::zeros({1, 1, 5, 5})), c10::Error);
}
