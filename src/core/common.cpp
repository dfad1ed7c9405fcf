#include "ebm/core/common.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <ATen/Context.h>
#include <ATen/Parallel.h>

namespace ebm {

const char* version() { return EBM_VERSION; }

namespace {
// OpenBLAS exports openblas_get_config; the reference BLAS does not. Looking
// the symbol up in the already-loaded process tells which library the
// dynamic linker actually bound libblas.so.3 to.
using ConfigFn = char* (*)();
ConfigFn openblas_config_fn() {
  return reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
}
}  // namespace

bool blas_is_openblas() { return openblas_config_fn() != nullptr; }

std::string blas_info() {
  if (auto fn = openblas_config_fn()) return fn();
  return "reference BLAS (slow! run scripts/setup to select OpenBLAS)";
}

int set_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  // Trained weights and gradients drift into denormal floats, which x86 CPUs
  // process ~100x slower (measured: a classifier's steps/s fell from 7 to 1
  // over a run). Flushing them to zero changes nothing of value.
  at::globalContext().setFlushDenormal(true);
  return n;
}

std::string data_dir() {
  const char* d = std::getenv("EBM_DATA");
  return (d && *d) ? d : "data";
}

}  // namespace ebm
