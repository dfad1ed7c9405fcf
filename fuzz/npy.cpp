// fuzz/npy.cpp: the NPY reader (src/io/image_io.cpp) through read_images("x.npy").
#include "readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ebm::fuzz::read_as("x.npy", data, size);
}
