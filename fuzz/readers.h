// readers.h: the IDX, NPY and PNG harnesses are one body with a file name.
#pragma once

#include "ebm/io/image_io.h"
#include "fuzz_common.h"

namespace ebm::fuzz {

// Write the input under `name` and read it as the CLI does (read_images calls
// read_tensor); a tensor that comes back must be what the contract says.
inline int read_as(const std::string& name, const uint8_t* data, size_t size) {
  init_torch();
  const std::string path = scratch_dir() + "/" + name;
  write_bytes(path, std::string(reinterpret_cast<const char*>(data), size));
  expect_data_errors([&] {
    const torch::Tensor t = read_images(path);
    if (t.dim() != 4 || t.scalar_type() != torch::kFloat32) finding("read_images returned " + c10::str(t.sizes()));
    if (t.numel() > 0 && (!torch::isfinite(t).all().item<bool>() || t.min().item<float>() < 0.f ||
                          t.max().item<float>() > 1.f))
      finding("read_images returned values outside [0,1] or non-finite");
  });
  return 0;
}

}  // namespace ebm::fuzz
