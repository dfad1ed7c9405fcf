// fuzz_common.h: what every harness shares.
//
// The oracle, beyond the sanitizers: a harness calls the library the way the
// CLI or the server does, and the only exceptions allowed out are the
// documented ones (DataError/UsageError for files and expressions, HttpError
// 4xx for requests). Anything else (a json::exception, a c10::Error, bad_alloc,
// a 5xx) is a finding: the harness prints it and aborts, so libFuzzer saves
// the input.
#pragma once

#include <torch/torch.h>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "ebm/core/common.h"

namespace ebm::fuzz {

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "\n==ebm-fuzz== FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

/// A private scratch folder (on /dev/shm when there is one), removed at exit.
/// The string is never destroyed: the exit handler that removes the folder runs
/// after static destructors.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    namespace fs = std::filesystem;
    const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    const fs::path d = base / ("ebm-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    auto* s = new std::string(d.string());
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return s;
  }();
  return *dir;
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  if (!f) finding("harness cannot write " + path);
}

/// One intra-op thread, as under a fuzzer nothing gains from more.
inline void init_torch() {
  static const bool once = [] {
    torch::set_num_threads(1);
    return true;
  }();
  (void)once;
}

/// Run f; DataError and UsageError are the documented outcomes for bad input.
template <class F>
void expect_data_errors(F&& f) {
  try {
    f();
  } catch (const ebm::DataError&) {
  } catch (const ebm::UsageError&) {
  } catch (const std::exception& e) {
    finding(std::string("undocumented exception ") + typeid(e).name() + ": " + e.what());
  }
}

}  // namespace ebm::fuzz
