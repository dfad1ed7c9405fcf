// fuzz/serve_oip.cpp: request decoding of the Open Inference Protocol
// (/v2/models/<m>/infer, src/serve/protocol.cpp): the body, the one input
// tensor (FP32/UINT8, flat or nested data), and the requested outputs.
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
    expect_http_4xx([&] { check_images(parse_oip_input(req, shape, kMaxImages), shape); });
  expect_http_4xx([&] {
    const std::vector<std::string> available = {"energy", "score", "is_ood", "p_value"};
    for (const auto& n : oip_requested_outputs(req, available))
      if (std::find(available.begin(), available.end(), n) == available.end()) finding("unknown output accepted: " + n);
  });
  return 0;
}
