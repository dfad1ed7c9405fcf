// test_util.h: helpers that several test files share. Targets are unity builds
// (EBM_UNITY_BUILD in CMakeLists.txt), so a helper defined in two test files is
// a compile error: it belongs here, or gets a name of its own.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ebm/core/common.h"

namespace ebm::test {

// The repository root (the shipped models live in kRoot + "/models").
inline const std::string kRoot = EBM_SOURCE_DIR;

// Double precision, for oracle comparisons.
inline const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// True when `rel` (e.g. "mnist/images.idx") exists under $EBM_DATA (ebm::data_dir()).
inline bool have_data_file(const std::string& rel) { return std::filesystem::exists(ebm::data_dir() + "/" + rel); }

// True when the MNIST training images are installed.
inline bool have_mnist() { return have_data_file("mnist/images.idx"); }

// Uniform [0,1) images of `shape`, reproducible from `seed`.
inline torch::Tensor rand_images(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::rand(shape, gen);
}

}  // namespace ebm::test
