// fuzz/png.cpp: the PNG reader (src/io/image_io.cpp) through read_images("x.png").
#include "readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ebm::fuzz::read_as("x.png", data, size);
}
