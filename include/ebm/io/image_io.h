// image_io.h: tensor files (IDX, NPY, PNG) in and out.
//
// Formats, chosen by file name:
//   *.idx, *-ubyte, *.idx.gz, *-ubyte.gz, *.gz   IDX (ubyte or float32; gzip or plain)
//   *.npy                                         NPY v1-3 (float32, float64, uint8; C order)
//   *.png                                         8-bit PNG; read as grayscale
// Every reader validates the file and throws ebm::DataError naming the file
// and the problem (truncated, wrong magic, overflowing or mismatched dims,
// unsupported dtype, NaN pixels when forbidden). Writers are atomic.
#pragma once

#include <torch/types.h>

#include <string>

#include "ebm/core/common.h"

namespace ebm {

struct ReadOptions {
  /// Reject files containing NaN or Inf values (float formats only).
  bool allow_nan = false;
};

/// Read a tensor file as stored: dtype uint8 or float32 (float64 is narrowed
/// to float32), shape as in the file. PNG gives [H,W] uint8.
torch::Tensor read_tensor(const std::string& path, const ReadOptions& opts = {});

/// Read a file of images as float32 [N,C,H,W] in [0,1].
///   uint8 data is divided by 255; float data is taken as is (values outside
///   [0,1] are an error naming the first offending index).
///   Shapes: [H,W] -> [1,1,H,W]; [N,H,W] -> [N,1,H,W]; [N,C,H,W] kept.
torch::Tensor read_images(const std::string& path, const ReadOptions& opts = {});

/// Write a tensor; the format follows the extension (see top of file).
///   IDX/NPY: float32 or uint8 tensors of any rank 1..4, stored as is.
///   PNG:     images [N,C,H,W] or [H,W] in [0,1], tiled as a grid (see write_png_grid).
void write_tensor(const std::string& path, const torch::Tensor& t);

/// Tile images x[N,C,H,W] in [0,1] (C = 1 or 3; values are clamped) into one
/// PNG with `nrow` images per row (0 = ceil(sqrt(N))) and `pad` pixels of
/// mid-grey between tiles. Written atomically.
void write_png_grid(const std::string& path, const torch::Tensor& x, int64_t nrow = 0,
                    int64_t pad = 2);

/// Encode/decode helpers exposed for tests and the HTTP server.
std::string encode_png(const torch::Tensor& hw_u8);  // [H,W] uint8 -> PNG bytes
torch::Tensor decode_png(const std::string& bytes, const std::string& name);  // -> [H,W] uint8

/// The format a path would be read/written as: "idx", "npy" or "png";
/// throws UsageError for an unknown extension.
std::string tensor_format(const std::string& path);

}  // namespace ebm
