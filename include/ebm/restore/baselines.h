// baselines.h: classical restoration baselines, each a call into the library
// that owns it (OpenCV). No re-implementations: the point is to measure
// ebmkit against what a user would otherwise reach for.
//
//   denoise  opencv-nlmeans   cv::fastNlMeansDenoising   param h (0-255 scale; 8-bit input)
//            opencv-tvl1      cv::denoise_TVL1           param lambda (8-bit input, 30 iterations)
//            opencv-gaussian  cv::GaussianBlur           param sigma in pixels (float input)
//            opencv-median    cv::medianBlur             param ksize 3 or 5 (float input)
//   inpaint  opencv-telea     cv::inpaint INPAINT_TELEA  param radius
//            opencv-ns        cv::inpaint INPAINT_NS     param radius
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace ebm {

/// The baseline names above, and the parameter grid each is tuned over.
struct BaselineSpec {
  std::string name;
  std::string param;
  std::vector<double> grid;
};
std::vector<BaselineSpec> denoise_baselines();
std::vector<BaselineSpec> inpaint_baselines();

/// y: [N,1,H,W] in [0,1] -> [N,1,H,W] in [0,1]. Throws UsageError for an unknown name.
torch::Tensor opencv_denoise(const std::string& name, const torch::Tensor& y, double param);

/// image: [N,1,H,W] in [0,1]; known: [N or 1,1,H,W], 1 = known. Missing pixels
/// are filled; known pixels are returned exactly as given. -> [N,1,H,W].
torch::Tensor opencv_inpaint(const std::string& name, const torch::Tensor& image, const torch::Tensor& known,
                             double radius);

}  // namespace ebm
