#include "ebm/metrics/image_metrics.h"

#include <torch/torch.h>

namespace ebm {

namespace {
void check_pair(const torch::Tensor& x, const torch::Tensor& ref, const char* who) {
  TORCH_CHECK(x.dim() == 4 && x.sizes() == ref.sizes(), who, ": x and ref must both be [N,C,H,W] of equal shape, got ",
              x.sizes(), " and ", ref.sizes());
}
}  // namespace

torch::Tensor psnr(const torch::Tensor& x, const torch::Tensor& ref) {
  check_pair(x, ref, "psnr");
  auto mse = (x.to(torch::kFloat64) - ref.to(torch::kFloat64)).pow(2).flatten(1).mean(1);
  return 10.0 * torch::log10(1.0 / mse);
}

torch::Tensor psnr_masked(const torch::Tensor& x, const torch::Tensor& ref, const torch::Tensor& mask) {
  check_pair(x, ref, "psnr_masked");
  auto m = (mask != 0).expand_as(x).to(torch::kFloat64).flatten(1);
  auto se = (x.to(torch::kFloat64) - ref.to(torch::kFloat64)).pow(2).flatten(1);
  auto count = m.sum(1);
  TORCH_CHECK((count > 0).all().item<bool>(), "psnr_masked: an image has an empty mask");
  return 10.0 * torch::log10(count / (se * m).sum(1));
}

torch::Tensor ssim(const torch::Tensor& x0, const torch::Tensor& y0) {
  check_pair(x0, y0, "ssim");
  TORCH_CHECK(x0.size(2) >= 7 && x0.size(3) >= 7, "ssim needs images of at least 7x7, got ", x0.sizes());
  const double k1 = 0.01, k2 = 0.03, r = 1.0, np = 49.0;
  const double c1 = (k1 * r) * (k1 * r), c2 = (k2 * r) * (k2 * r), cov_norm = np / (np - 1.0);
  auto x = x0.to(torch::kFloat64), y = y0.to(torch::kFloat64);
  // A 7x7 'valid' box filter is exactly skimage's uniform filter followed by
  // its crop of (7-1)/2 pixels at each border.
  auto box = [](const torch::Tensor& t) { return torch::avg_pool2d(t, 7, 1); };
  auto ux = box(x), uy = box(y);
  auto vx = cov_norm * (box(x * x) - ux * ux);
  auto vy = cov_norm * (box(y * y) - uy * uy);
  auto vxy = cov_norm * (box(x * y) - ux * uy);
  auto s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  return s.flatten(1).mean(1);
}

}  // namespace ebm
