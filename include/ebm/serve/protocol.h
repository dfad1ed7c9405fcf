// protocol.h: request bodies in, tensors out, and back; every check a client
// can fail, with the HTTP status and a message that names the problem.
//
// Images in a /v1 request ("images": [...]), each one of:
//   - a base64 string of an 8-bit greyscale PNG of the model's H x W
//     (colour PNGs are converted to grey, as every ebmkit reader does);
//   - nested numbers [H][W] or [C][H][W], or a flat list of C*H*W numbers,
//     each finite and in [0,1].
// Open Inference Protocol (KServe V2) tensors: {"name","shape","datatype","data"}
// with datatype FP32 (values in [0,1]) or UINT8 (divided by 255), shape
// [N,C,H,W], [N,H,W] or [N,C*H*W], and data flat (row-major) or nested.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/types.h>

namespace ebm::serve {

using json = nlohmann::json;

/// A request the server refuses: `status` is the HTTP status (400, 404, 413,
/// 422, 503, 504, ...), the message names the problem.
struct HttpError : std::runtime_error {
  HttpError(int status, const std::string& message, json detail = nullptr)
      : std::runtime_error(message), status(status), detail(std::move(detail)) {}
  int status;
  /// Extra fields of the error body (e.g. the guard's verdicts), or null.
  json detail;
};

/// Channels, height and width of one image a model takes.
struct ImageShape {
  int64_t c = 1, h = 28, w = 28;
  int64_t numel() const { return c * h * w; }
  std::string str() const;  // "1x28x28"
};

/// RFC 4648 base64 (standard alphabet, '=' padding; whitespace is skipped on decode).
std::string base64_encode(const std::string& bytes);
/// HttpError 400 naming `where` on a character outside the alphabet or bad padding.
std::string base64_decode(const std::string& text, const std::string& where);

/// One image (see the top of this file) -> [C,H,W] float32 in [0,1].
/// HttpError 400 naming `where` (e.g. "images[3]") and the problem.
torch::Tensor parse_image(const json& item, const ImageShape& shape, const std::string& where);
/// body[field] must be a non-empty array of at most `max_images` images -> [N,C,H,W].
/// 400 when missing or malformed, 413 when there are too many.
torch::Tensor parse_images(const json& body, const ImageShape& shape, int64_t max_images,
                           const std::string& field = "images");

/// One image [C,H,W] in [0,1] as a response field: "array" gives nested
/// [C][H][W] floats, "png" a base64 8-bit PNG (C = 1 only).
json image_to_json(const torch::Tensor& chw, const std::string& format);
/// "array" | "png"; HttpError 400 on anything else.
std::string check_image_format(const std::string& format);

/// A number field of a request: the default when absent; 400 when present but
/// not a finite number or outside [lo, hi].
double number_field(const json& body, const std::string& key, double dflt, double lo, double hi);
/// An integer field: as number_field, and whole.
int64_t int_field(const json& body, const std::string& key, int64_t dflt, int64_t lo, int64_t hi);
/// A string field: the default when absent; 400 when present but not a string.
std::string string_field(const json& body, const std::string& key, const std::string& dflt);
/// A boolean field: the default when absent; 400 when present but not a boolean.
bool bool_field(const json& body, const std::string& key, bool dflt);

/// The body as JSON: 400 on a parse error (with the byte offset), or when it is not an object.
json parse_body(const std::string& body);

// ---------------------------------------------------------------- Open Inference Protocol

/// The input tensor of an inference request -> [N,C,H,W] float32 in [0,1].
/// Needs exactly one input (any name); 400 on a wrong datatype, shape,
/// element count, or value; 413 when N > max_images.
torch::Tensor parse_oip_input(const json& request, const ImageShape& shape, int64_t max_images);
/// {"name","datatype","shape","data"(flat)} of t: FP64, FP32, INT64 or BOOL by t's dtype.
json oip_tensor(const std::string& name, const torch::Tensor& t);
/// The output names a request asks for ("outputs":[{"name"},...]); empty = all.
/// 400 naming an output not among `available`.
std::vector<std::string> oip_requested_outputs(const json& request, const std::vector<std::string>& available);

}  // namespace ebm::serve
