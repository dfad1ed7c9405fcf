// spearman.h: Spearman's rank correlation, for "does a curve rise?" questions
// (ebm ood shift: severity vs AUROC).
//
// rho(a, b) = the Pearson correlation of the ranks of a and of b, with tied
// values given the mean of the ranks they span (average ranks, scipy's
// spearmanr and pandas' default). Without ties it equals
// 1 - 6 sum d_i^2 / (n (n^2 - 1)), d_i the rank differences.
// rho = 1 for any strictly increasing relation, -1 for a strictly decreasing one.
#pragma once

#include <vector>

namespace ebm {

/// Average ranks (1-based) of v [N]: rank(v_i) = #{j : v_j < v_i} + (#{j : v_j == v_i} + 1) / 2.
/// Values must be finite (UsageError naming the first that is not).
std::vector<double> average_ranks(const std::vector<double>& v);

/// Spearman's rho of a [N] and b [N] (same length, N >= 2, finite values).
/// NaN when either side is constant (its ranks have no variance), as scipy returns.
/// UsageError on a length mismatch, N < 2 or a non-finite value, naming it.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace ebm
