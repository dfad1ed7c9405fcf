// Test-process environment: datasets come from $EBM_DATA, or <repo>/data when
// it is unset (ctest runs tests from the build tree, where ./data is absent).
#include <cstdlib>

namespace {
struct DataEnv {
  DataEnv() { ::setenv("EBM_DATA", EBM_SOURCE_DIR "/data", /*overwrite=*/0); }
} data_env;
}  // namespace
