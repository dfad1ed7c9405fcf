// spearman.cpp: average ranks and Spearman's rho. See spearman.h.
#include "ebm/metrics/spearman.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "ebm/core/common.h"

namespace ebm {

namespace {

void check_finite(const std::vector<double>& v, const char* what) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw UsageError(std::string("spearman: ") + what + " value #" + std::to_string(i) + " is not finite (" +
                       std::to_string(v[i]) + ")");
}

}  // namespace

std::vector<double> average_ranks(const std::vector<double>& v) {
  check_finite(v, "a");
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return v[i] < v[j]; });
  std::vector<double> r(v.size());
  // A run of equal values at sorted positions [i, j) shares the mean of ranks i+1..j.
  for (size_t i = 0; i < order.size();) {
    size_t j = i + 1;
    while (j < order.size() && v[order[j]] == v[order[i]]) ++j;
    const double mean_rank = 0.5 * double(i + 1 + j);
    for (size_t k = i; k < j; ++k) r[order[k]] = mean_rank;
    i = j;
  }
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size())
    throw UsageError("spearman: the two sides differ in length (" + std::to_string(a.size()) + " vs " +
                     std::to_string(b.size()) + ")");
  if (a.size() < 2) throw UsageError("spearman: needs at least 2 pairs, got " + std::to_string(a.size()));
  check_finite(b, "b");
  const auto ra = average_ranks(a), rb = average_ranks(b);
  // Both rank vectors have mean (n + 1) / 2, whatever the ties.
  const double m = 0.5 * double(a.size() + 1);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - m) * (rb[i] - m);
    saa += (ra[i] - m) * (ra[i] - m);
    sbb += (rb[i] - m) * (rb[i] - m);
  }
  if (saa == 0 || sbb == 0) return std::nan("");
  // Clamp the rounding of a perfect relation to exactly +-1.
  return std::clamp(sab / std::sqrt(saa * sbb), -1.0, 1.0);
}

}  // namespace ebm
