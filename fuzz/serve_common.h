// serve_common.h: the request-decoding harnesses of both server APIs.
#pragma once

#include "ebm/serve/protocol.h"
#include "fuzz_common.h"

namespace ebm::fuzz {

using ebm::serve::HttpError;
using ebm::serve::ImageShape;

/// Shapes every request is decoded against: the shipped models' 1x28x28 and
/// two small ones, so that short inputs can reach the value checks.
inline const std::vector<ImageShape>& shapes() {
  static const std::vector<ImageShape> s = {{1, 28, 28}, {1, 2, 3}, {3, 2, 2}};
  return s;
}
constexpr int64_t kMaxImages = 8;

/// Run f; the documented outcome for a bad request is an HttpError with a 4xx
/// status. Anything else would reach the client as a 500.
template <class F>
void expect_http_4xx(F&& f) {
  try {
    f();
  } catch (const HttpError& e) {
    if (e.status < 400 || e.status > 499) finding("HttpError " + std::to_string(e.status) + ": " + e.what());
  } catch (const std::exception& e) {
    finding(std::string("undocumented exception (a 500) ") + typeid(e).name() + ": " + e.what());
  }
}

/// Decoded images must be [N,C,H,W] float32, finite, in [0,1], N in 1..kMaxImages.
inline void check_images(const torch::Tensor& x, const ImageShape& s) {
  if (x.dim() != 4 || x.size(0) < 1 || x.size(0) > kMaxImages || x.size(1) != s.c || x.size(2) != s.h ||
      x.size(3) != s.w || x.scalar_type() != torch::kFloat32)
    finding("decoded images have shape " + c10::str(x.sizes()) + " for a " + s.str() + " model");
  if (!torch::isfinite(x).all().item<bool>() || x.min().item<float>() < 0.f || x.max().item<float>() > 1.f)
    finding("decoded images hold values outside [0,1]");
}

}  // namespace ebm::fuzz
