#include "ebm/core/allocator.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

namespace ebm {

bool tune_allocator() {
#if defined(__SANITIZE_ADDRESS__)
  return false;
#else
  const char* env = std::getenv("EBM_MALLOC_TUNING");
  if (env && std::strcmp(env, "0") == 0) return false;
  // mallopt returns 1 on success, 0 when the value is out of range
  // (M_MMAP_THRESHOLD at most HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit).
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return mmap_ok && trim_ok;
#endif
}

}  // namespace ebm
