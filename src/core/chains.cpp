#include "ebm/core/chains.h"

#include <torch/torch.h>

#include "ebm/core/common.h"

namespace ebm {

torch::Tensor best_of_k_rows(const torch::Tensor& score, int64_t k) {
  if (k < 1) throw UsageError("best_of_k_rows: k must be >= 1, got " + std::to_string(k));
  TORCH_CHECK(score.dim() == 1 && score.size(0) % k == 0, "best_of_k_rows: score must be [K*B] with K = ", k,
              ", got ", score.sizes());
  const int64_t b = score.size(0) / k;
  const auto best = score.detach().view({k, b}).argmin(0);  // [B] chain index per item
  return best * b + torch::arange(b, torch::kInt64);
}

}  // namespace ebm
