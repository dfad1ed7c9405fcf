#include "ebm/restore/baselines.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/photo.hpp>
#include <torch/torch.h>

#include "ebm/core/common.h"

namespace ebm {
namespace {

cv::Mat to_u8(const torch::Tensor& hw) {
  auto t = hw.mul(255.0).round().clamp(0, 255).to(torch::kUInt8).contiguous();
  return cv::Mat(int(t.size(0)), int(t.size(1)), CV_8UC1, t.data_ptr<uint8_t>()).clone();
}
cv::Mat to_f32(const torch::Tensor& hw) {
  auto t = hw.to(torch::kFloat32).contiguous();
  return cv::Mat(int(t.size(0)), int(t.size(1)), CV_32FC1, t.data_ptr<float>()).clone();
}
torch::Tensor from_mat(const cv::Mat& m) {
  if (m.type() == CV_8UC1)
    return torch::from_blob(m.data, {m.rows, m.cols}, torch::kUInt8).to(torch::kFloat32).div(255.0);
  TORCH_INTERNAL_ASSERT(m.type() == CV_32FC1 && m.isContinuous());
  return torch::from_blob(m.data, {m.rows, m.cols}, torch::kFloat32).clone().clamp(0, 1);
}

}  // namespace

std::vector<BaselineSpec> denoise_baselines() {
  return {{"opencv-nlmeans", "h", {4, 7, 10, 14, 18, 23, 28, 35, 45, 60}},
          {"opencv-tvl1", "lambda", {0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0}},
          {"opencv-gaussian", "sigma", {0.5, 0.7, 0.9, 1.1, 1.4, 1.8}},
          {"opencv-median", "ksize", {3, 5}}};
}

std::vector<BaselineSpec> inpaint_baselines() {
  return {{"opencv-telea", "radius", {1, 2, 3, 5, 8}}, {"opencv-ns", "radius", {1, 2, 3, 5, 8}}};
}

torch::Tensor opencv_denoise(const std::string& name, const torch::Tensor& y, double p) {
  TORCH_CHECK(y.dim() == 4 && y.size(1) == 1, "opencv_denoise wants [N,1,H,W], got ", y.sizes());
  auto out = torch::empty_like(y, torch::kFloat32);
  for (int64_t i = 0; i < y.size(0); ++i) {
    auto img = y[i][0];
    cv::Mat dst;
    if (name == "opencv-nlmeans") {
      cv::fastNlMeansDenoising(to_u8(img), dst, float(p), 7, 21);
    } else if (name == "opencv-tvl1") {
      std::vector<cv::Mat> obs{to_u8(img)};
      cv::denoise_TVL1(obs, dst, p, 30);
    } else if (name == "opencv-gaussian") {
      cv::GaussianBlur(to_f32(img), dst, cv::Size(0, 0), p, p, cv::BORDER_REFLECT);
    } else if (name == "opencv-median") {
      cv::medianBlur(to_f32(img), dst, int(p));
    } else {
      throw UsageError("unknown denoise baseline '" + name + "'");
    }
    out[i][0].copy_(from_mat(dst));
  }
  return out;
}

torch::Tensor opencv_inpaint(const std::string& name, const torch::Tensor& image, const torch::Tensor& known,
                             double radius) {
  int flags;
  if (name == "opencv-telea") flags = cv::INPAINT_TELEA;
  else if (name == "opencv-ns") flags = cv::INPAINT_NS;
  else throw UsageError("unknown inpaint baseline '" + name + "'");
  auto kn = (known != 0).expand_as(image);
  auto out = image.to(torch::kFloat32).clone();
  for (int64_t i = 0; i < image.size(0); ++i) {
    auto missing = (~kn[i][0]).to(torch::kUInt8).mul(255).contiguous();
    cv::Mat mask(int(missing.size(0)), int(missing.size(1)), CV_8UC1, missing.data_ptr<uint8_t>());
    cv::Mat dst;
    cv::inpaint(to_u8(image[i][0]), mask, dst, radius, flags);
    // Only the missing pixels come from OpenCV; known ones stay exact (not 8-bit rounded).
    out[i][0] = torch::where(kn[i][0], out[i][0], from_mat(dst));
  }
  return out;
}

}  // namespace ebm
