// scratch_dir.h: per-process scratch directories for tests that write models
// and reports. Each path is under gtest's TempDir(), cleared (and created
// empty when `create`), and removed when
// the test binary exits (set EBM_KEEP_TEST_DIRS=1 to keep them for a look).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace ebm::test {

inline std::string scratch_dir(const std::string& prefix, const std::string& name, bool create) {
  // Removes every directory handed out, at exit (a static's destructor).
  static struct Registry {
    std::vector<std::string> dirs;
    ~Registry() {
      const char* keep = std::getenv("EBM_KEEP_TEST_DIRS");
      if (keep && std::string(keep) == "1") return;
      for (const auto& d : dirs) std::system(("rm -rf '" + d + "'").c_str());
    }
  } registry;
  const std::string d = ::testing::TempDir() + prefix + name + "_" + std::to_string(::getpid());
  std::system(("rm -rf '" + d + "'" + (create ? " && mkdir -p '" + d + "'" : std::string())).c_str());
  registry.dirs.push_back(d);
  return d;
}

}  // namespace ebm::test
