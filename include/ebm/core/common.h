// common.h: error types, small utilities shared by every ebmkit module.
//
// Errors by audience (see DESIGN.md):
//   UsageError      bad flags or arguments            -> CLI exit code 2
//   DataError       unreadable / malformed user files -> CLI exit code 1
//   DivergenceError NaN/Inf energies or gradients     -> CLI exit code 1
// Internal invariants use TORCH_INTERNAL_ASSERT instead.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ebm {

/// Bad user input on the command line or in a request (exit code 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A user-supplied file or dataset that cannot be read or is malformed (exit code 1).
struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Numerical divergence: the energy or its gradient became NaN or Inf (exit code 1).
struct DivergenceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Library version, e.g. "0.2.0".
const char* version();

/// Description of the BLAS that LibTorch calls at run time, e.g.
/// "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64", or
/// "reference BLAS (slow!)" when OpenBLAS is not what libblas.so.3 resolved to.
std::string blas_info();

/// True when OpenBLAS is the BLAS in use.
bool blas_is_openblas();

/// Set LibTorch's intra-op thread count; n <= 0 means all hardware threads.
/// Returns the count actually set.
int set_threads(int n);

/// Directory for datasets: $EBM_DATA, or "./data".
std::string data_dir();

}  // namespace ebm
