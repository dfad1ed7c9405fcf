// val_ood.cpp: the validation-OOD corruptions. See val_ood.h.
#include "ebm/ood/val_ood.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/ood/shift.h"  // gaussian_blur

namespace ebm {

const std::vector<std::string>& val_ood_kinds() {
  static const std::vector<std::string> k{"pixel-shuffle", "patch-shuffle", "blur", "mixup"};
  return k;
}

torch::Tensor corrupt(const std::string& kind, const torch::Tensor& x, uint64_t seed) {
  TORCH_CHECK(x.dim() == 4, "corrupt: x must be [N,C,H,W], got ", x.sizes());
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto gen = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard ng;
  if (kind == "pixel-shuffle") {
    // An independent permutation per image: argsort of uniform noise.
    auto perm = torch::rand({N, H * W}, gen).argsort(/*dim=*/int64_t(1));
    auto flat = x.reshape({N, C, H * W});
    return flat.gather(2, perm.unsqueeze(1).expand({N, C, H * W})).reshape({N, C, H, W});
  }
  if (kind == "patch-shuffle") {
    if (H % 4 != 0 || W % 4 != 0)
      throw UsageError("patch-shuffle needs H and W divisible by 4, got " + std::to_string(H) + "x" + std::to_string(W));
    const int64_t ph = H / 4, pw = W / 4;
    // [N,C,4,ph,4,pw] -> [N,16,C,ph,pw]
    auto p = x.reshape({N, C, 4, ph, 4, pw}).permute({0, 2, 4, 1, 3, 5}).reshape({N, 16, C, ph, pw});
    auto perm = torch::rand({N, 16}, gen).argsort(/*dim=*/int64_t(1));
    p = p.gather(1, perm.view({N, 16, 1, 1, 1}).expand({N, 16, C, ph, pw}));
    return p.reshape({N, 4, 4, C, ph, pw}).permute({0, 3, 1, 4, 2, 5}).reshape({N, C, H, W}).contiguous();
  }
  if (kind == "blur") return gaussian_blur(x, 2.0).clamp(0, 1);
  if (kind == "mixup") {
    if (N < 2) return x.clone();
    // A derangement: image i is mixed with image (i + shift) mod N, shift in 1..N-1.
    const int64_t shift = 1 + torch::randint(N - 1, {1}, gen).item<int64_t>();
    return 0.5 * x + 0.5 * x.roll(shift, 0);
  }
  std::string known;
  for (const auto& k : val_ood_kinds()) known += (known.empty() ? "" : ", ") + k;
  throw UsageError("unknown validation-OOD kind '" + kind + "' (known: " + known + ")");
}

bool is_val_ood(const std::string& name) {
  if (name == "val-ood" || name == "glyphs") return true;
  const auto& k = val_ood_kinds();
  return std::find(k.begin(), k.end(), name) != k.end();
}

torch::Tensor validation_ood(const std::string& kind, const std::string& in, int64_t n, uint64_t seed,
                             const std::string& root) {
  if (n < 1) throw UsageError("validation OOD needs n >= 1 images, got " + std::to_string(n));
  if (kind == "glyphs") {
    // The real validation set: a seeded random subset of its val split, so
    // that a small n still mixes fonts and characters.
    DatasetOptions g;
    g.split = "val";
    g.root = root;
    const Dataset all = load_dataset("glyphs", g);
    const int64_t m = std::min(n, all.size());
    if (m == 0) throw DataError("glyphs: the val split is empty");
    auto perm = torch::randperm(all.size(), at::detail::createCPUGenerator(seed), torch::kInt64).narrow(0, 0, m);
    return all.images.index_select(0, perm);
  }
  DatasetOptions d;
  d.split = "fit";
  d.root = root;
  const Dataset fit = load_dataset(in, d);
  const int64_t m = std::min(n, fit.size());
  if (m == 0) throw DataError("'" + in + "' has an empty fit split");
  return corrupt(kind, fit.images.narrow(0, fit.size() - m, m), seed);
}

}  // namespace ebm
