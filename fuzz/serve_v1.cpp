// fuzz/serve_v1.cpp: request decoding of the ebmkit JSON API (/v1/...,
// src/serve/protocol.cpp): the body, "images" (base64 PNGs or nested
// numbers), and the option fields the /v1 handlers read (service.cpp).
#include "serve_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ebm::serve;
  using namespace ebm::fuzz;
  init_torch();
  const std::string body(reinterpret_cast<const char*>(data), size);
  json req;
  try {
    req = parse_body(body);
  } catch (const HttpError& e) {
    if (e.status != 400) finding("parse_body answered " + std::to_string(e.status));
    return 0;
  } catch (const std::exception& e) {
    finding(std::string("parse_body: undocumented exception (a 500) ") + typeid(e).name() + ": " + e.what());
  }
  for (const auto& shape : shapes())
    expect_http_4xx([&] { check_images(parse_images(req, shape, kMaxImages), shape); });
  expect_http_4xx([&] {
    (void)string_field(req, "model", "");
    (void)bool_field(req, "allow_ood", false);
    (void)check_image_format(string_field(req, "format", "array"));
    (void)string_field(req, "solver", "langevin");
    (void)string_field(req, "schedule", "constant");
    (void)string_field(req, "mask", "center:12");
  });
  expect_http_4xx([&] {
    const double sigma = number_field(req, "sigma", 0.2, 0, 1);
    const double step = number_field(req, "step_size", 0.01, 0, 10);
    const double dw = number_field(req, "data_weight", 1, 0, 1e6);
    const double noise = number_field(req, "noise", 0.005, 0, 1);
    if (!(sigma >= 0 && sigma <= 1 && step >= 0 && step <= 10 && dw >= 0 && dw <= 1e6 && noise >= 0 && noise <= 1))
      finding("number_field returned a value outside its range");
    const int64_t steps = int_field(req, "steps", 100, 0, 1000);
    const int64_t chains = int_field(req, "chains", 1, 1, 64);
    const int64_t seed = int_field(req, "seed", 0, 0, int64_t(1) << 53);
    if (steps < 0 || steps > 1000 || chains < 1 || chains > 64 || seed < 0 || seed > (int64_t(1) << 53))
      finding("int_field returned a value outside its range");
  });
  return 0;
}
