// format.h: number formatting shared by the OOD report writers and plots
// (internal to src/ood).
#pragma once

#include <cstdio>
#include <string>

namespace ebm {

/// printf-style formatting of one number, e.g. fmt("%.4f", auroc).
inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace ebm
