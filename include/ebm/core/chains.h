// chains.h: rules shared by every caller that runs several chains per item.
#pragma once

#include <torch/types.h>

namespace ebm {

/// Best-of-K selection, the one rule for restarts and multi-chain restoration.
/// K chains per item, B items, stacked as x.repeat({K,1,1,1}) stacks them:
/// chain c of item i is row c*B + i of `score` [K*B]. Returns [B] int64 row
/// indices into that stack: each item's lowest-score chain (ties: lowest c).
torch::Tensor best_of_k_rows(const torch::Tensor& score, int64_t k);

}  // namespace ebm
