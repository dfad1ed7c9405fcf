#include "ebm/compose/morphology.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

namespace ebm {

torch::Tensor skeletonize(const torch::Tensor& binary) {
  TORCH_CHECK(binary.dim() == 2, "skeletonize wants [H,W], got ", binary.sizes());
  const int64_t h = binary.size(0), w = binary.size(1);
  auto b = (binary != 0).to(torch::kUInt8).contiguous();
  std::vector<uint8_t> img(b.data_ptr<uint8_t>(), b.data_ptr<uint8_t>() + h * w);
  auto at = [&](int64_t r, int64_t c) -> int {
    return (r < 0 || c < 0 || r >= h || c >= w) ? 0 : img[r * w + c];
  };
  // Zhang & Suen (1984): two sub-iterations that peel boundary pixels while
  // keeping 8-connectivity, until nothing changes.
  bool changed = true;
  std::vector<int64_t> del;
  while (changed) {
    changed = false;
    for (int pass = 0; pass < 2; ++pass) {
      del.clear();
      for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < w; ++c) {
          if (!img[r * w + c]) continue;
          int p[8] = {at(r - 1, c), at(r - 1, c + 1), at(r, c + 1), at(r + 1, c + 1),
                      at(r + 1, c), at(r + 1, c - 1), at(r, c - 1), at(r - 1, c - 1)};
          int n = 0, trans = 0;
          for (int i = 0; i < 8; ++i) {
            n += p[i];
            trans += (p[i] == 0 && p[(i + 1) % 8] == 1);
          }
          if (n < 2 || n > 6 || trans != 1) continue;
          if (pass == 0 ? (p[0] * p[2] * p[4] == 0 && p[2] * p[4] * p[6] == 0)
                        : (p[0] * p[2] * p[6] == 0 && p[0] * p[4] * p[6] == 0))
            del.push_back(r * w + c);
        }
      for (int64_t i : del) img[i] = 0;
      changed = changed || !del.empty();
    }
  }
  return torch::from_blob(img.data(), {h, w}, torch::kUInt8).clone().to(torch::kBool);
}

torch::Tensor stroke_thickness(const torch::Tensor& x, double threshold) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 1, "stroke_thickness wants x [N,1,H,W], got ", x.sizes());
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto bin = (x.select(1, 0) > threshold).to(torch::kUInt8).contiguous();
  auto out = torch::zeros({n}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    auto bi = bin[i];
    const uint8_t* p = bi.data_ptr<uint8_t>();
    std::vector<std::pair<int64_t, int64_t>> bg;
    for (int64_t r = -1; r <= h; ++r)  // the frame outside the image counts as background
      for (int64_t c = -1; c <= w; ++c)
        if (r < 0 || c < 0 || r >= h || c >= w || !p[r * w + c]) bg.emplace_back(r, c);
    auto skel = skeletonize(bi);
    const bool* s = skel.data_ptr<bool>();
    double sum = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c) {
        if (!s[r * w + c]) continue;
        // Brute-force exact EDT: 28x28 images make this cheap enough.
        int64_t best = std::numeric_limits<int64_t>::max();
        for (auto& q : bg) best = std::min(best, (q.first - r) * (q.first - r) + (q.second - c) * (q.second - c));
        sum += 2.0 * std::sqrt(double(best)) - 1.0;
        ++count;
      }
    out[i] = count ? float(sum / count) : 0.f;
  }
  return out;
}

torch::Tensor thickness_class(const torch::Tensor& thickness, double lo, double hi) {
  TORCH_CHECK(lo <= hi, "thickness_class: tercile boundaries must be ordered, got ", lo, " > ", hi);
  return (thickness > lo).to(torch::kInt64) + (thickness > hi).to(torch::kInt64);
}

}  // namespace ebm
