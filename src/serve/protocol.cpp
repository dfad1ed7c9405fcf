#include "ebm/serve/protocol.h"

#include <cmath>

#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/io/image_io.h"

namespace ebm::serve {

namespace {

[[noreturn]] void bad(const std::string& msg, int status = 400) { throw HttpError(status, msg); }

// Flatten nested JSON numbers row-major into `out`, checking the shape level by level.
void flatten_numbers(const json& j, const std::vector<int64_t>& shape, size_t level, std::vector<float>& out,
                     const std::string& where) {
  if (level == shape.size()) {
    if (!j.is_number()) bad(where + ": expected a number, got " + std::string(j.type_name()));
    out.push_back(j.get<float>());
    return;
  }
  if (!j.is_array() || int64_t(j.size()) != shape[level]) {
    std::string dims;
    for (size_t i = level; i < shape.size(); ++i) dims += (dims.empty() ? "" : "x") + std::to_string(shape[i]);
    bad(where + ": expected a nested array of shape " + dims + ", got " +
        (j.is_array() ? std::to_string(j.size()) + " elements at depth " + std::to_string(level)
                      : std::string(j.type_name())));
  }
  for (size_t i = 0; i < j.size(); ++i) flatten_numbers(j[i], shape, level + 1, out, where);
}

// Depth of the first-element chain of a nested array ([[..]] -> 2).
int nesting(const json& j) {
  int d = 0;
  const json* p = &j;
  while (p->is_array() && !p->empty()) {
    ++d;
    p = &(*p)[0];
  }
  return p->is_array() ? d + 1 : d;
}

void check_pixels(const std::vector<float>& v, const std::string& where) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) bad(where + ": value at flat index " + std::to_string(i) + " is not finite");
    if (v[i] < 0.0f || v[i] > 1.0f)
      bad(where + ": value " + std::to_string(v[i]) + " at flat index " + std::to_string(i) + " is outside [0,1]");
  }
}

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) | (uint32_t(uint8_t(s[at + 2])) << 8) |
         uint32_t(uint8_t(s[at + 3]));
}

}  // namespace

std::string ImageShape::str() const {
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

std::string base64_encode(const std::string& bytes) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? tbl[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(const std::string& text, const std::string& where) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  size_t n = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    ++n;
    if (c == '=') {
      ++pad;
      continue;
    }
    if (pad > 0) bad(where + ": base64 data after '=' padding (offset " + std::to_string(i) + ")");
    const int v = val(c);
    if (v < 0) bad(where + ": character '" + std::string(1, c) + "' at offset " + std::to_string(i) + " is not base64");
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xFF);
    }
  }
  if (n % 4 != 0 || pad > 2) bad(where + ": base64 length " + std::to_string(n) + " is not a multiple of 4");
  return out;
}

torch::Tensor parse_image(const json& item, const ImageShape& shape, const std::string& where) {
  if (item.is_string()) {
    const std::string bytes = base64_decode(item.get_ref<const std::string&>(), where);
    // Check the PNG's own width and height before decoding, so that a small
    // body claiming a huge image (a decompression bomb) costs nothing.
    static const std::string sig("\x89PNG\r\n\x1a\n", 8);
    if (bytes.size() < 24 || bytes.compare(0, 8, sig) != 0 || bytes.compare(12, 4, "IHDR") != 0)
      bad(where + ": not a PNG (bad signature or header)");
    const uint32_t w = be32(bytes, 16), h = be32(bytes, 20);
    if (int64_t(w) != shape.w || int64_t(h) != shape.h)
      bad(where + ": PNG is " + std::to_string(w) + "x" + std::to_string(h) + ", the model takes " +
          std::to_string(shape.w) + "x" + std::to_string(shape.h));
    if (shape.c != 1) bad(where + ": PNG input needs a 1-channel model, this one takes " + shape.str());
    torch::Tensor hw;
    try {
      hw = decode_png(bytes, where);
    } catch (const std::exception& e) {
      bad(e.what());
    }
    return hw.to(torch::kFloat32).div_(255.0).unsqueeze(0);
  }
  if (!item.is_array()) bad(where + ": expected a base64 PNG string or an array of numbers, got " + std::string(item.type_name()));
  std::vector<float> v;
  v.reserve(size_t(shape.numel()));
  const int depth = nesting(item);
  if (depth == 1) flatten_numbers(item, {shape.numel()}, 0, v, where);
  else if (depth == 2) {
    if (shape.c != 1) bad(where + ": [H][W] arrays need a 1-channel model, this one takes " + shape.str());
    flatten_numbers(item, {shape.h, shape.w}, 0, v, where);
  } else if (depth == 3) flatten_numbers(item, {shape.c, shape.h, shape.w}, 0, v, where);
  else bad(where + ": expected [H][W], [C][H][W] or a flat array for a " + shape.str() + " image, got nesting depth " +
           std::to_string(depth));
  check_pixels(v, where);
  return torch::from_blob(v.data(), {shape.c, shape.h, shape.w}, torch::kFloat32).clone();
}

torch::Tensor parse_images(const json& body, const ImageShape& shape, int64_t max_images, const std::string& field) {
  if (!body.contains(field)) bad("missing field '" + field + "' (a list of images)");
  const json& arr = body[field];
  if (!arr.is_array()) bad("'" + field + "' must be a list of images, got " + std::string(arr.type_name()));
  if (arr.empty()) bad("'" + field + "' is empty");
  if (int64_t(arr.size()) > max_images)
    bad("'" + field + "' has " + std::to_string(arr.size()) + " images; the limit is " + std::to_string(max_images) +
            " per request",
        413);
  auto out = torch::empty({int64_t(arr.size()), shape.c, shape.h, shape.w}, torch::kFloat32);
  for (size_t i = 0; i < arr.size(); ++i) out[int64_t(i)] = parse_image(arr[i], shape, field + "[" + std::to_string(i) + "]");
  return out;
}

std::string check_image_format(const std::string& format) {
  if (format != "array" && format != "png") bad("format must be \"array\" or \"png\", got \"" + format + "\"");
  return format;
}

json image_to_json(const torch::Tensor& chw, const std::string& format) {
  TORCH_CHECK(chw.dim() == 3, "image_to_json: expected [C,H,W], got ", chw.sizes());
  if (check_image_format(format) == "png") {
    TORCH_CHECK(chw.size(0) == 1, "image_to_json: png needs 1 channel");
    const auto u8 = chw[0].mul(255).round().clamp(0, 255).to(torch::kUInt8).contiguous();
    return base64_encode(encode_png(u8));
  }
  const auto c = chw.to(torch::kFloat32).contiguous();
  const float* p = c.data_ptr<float>();
  json out = json::array();
  for (int64_t k = 0; k < c.size(0); ++k) {
    json plane = json::array();
    for (int64_t i = 0; i < c.size(1); ++i) {
      json row = json::array();
      for (int64_t j = 0; j < c.size(2); ++j) row.push_back(*p++);
      plane.push_back(std::move(row));
    }
    out.push_back(std::move(plane));
  }
  return out;
}

double number_field(const json& body, const std::string& key, double dflt, double lo, double hi) {
  if (!body.contains(key) || body[key].is_null()) return dflt;
  const json& v = body[key];
  if (!v.is_number()) bad("'" + key + "' must be a number, got " + std::string(v.type_name()));
  const double d = v.get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    bad("'" + key + "' = " + std::to_string(d) + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return d;
}

int64_t int_field(const json& body, const std::string& key, int64_t dflt, int64_t lo, int64_t hi) {
  const double d = number_field(body, key, double(dflt), double(lo), double(hi));
  if (d != std::floor(d)) bad("'" + key + "' must be a whole number, got " + std::to_string(d));
  return int64_t(d);
}

std::string string_field(const json& body, const std::string& key, const std::string& dflt) {
  if (!body.contains(key) || body[key].is_null()) return dflt;
  if (!body[key].is_string()) bad("'" + key + "' must be a string, got " + std::string(body[key].type_name()));
  return body[key].get<std::string>();
}

bool bool_field(const json& body, const std::string& key, bool dflt) {
  if (!body.contains(key) || body[key].is_null()) return dflt;
  if (!body[key].is_boolean()) bad("'" + key + "' must be true or false, got " + std::string(body[key].type_name()));
  return body[key].get<bool>();
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    bad("malformed JSON at byte " + std::to_string(e.byte) + ": " +
        std::string(e.what()).substr(std::string(e.what()).find(':') + 1));
  } catch (const json::exception& e) {  // out_of_range: a number such as 1e400 overflows a double
    bad(std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object()) bad("the body must be a JSON object, got " + std::string(j.type_name()));
  return j;
}

// ---------------------------------------------------------------- Open Inference Protocol

torch::Tensor parse_oip_input(const json& request, const ImageShape& shape, int64_t max_images) {
  if (!request.contains("inputs") || !request["inputs"].is_array()) bad("missing 'inputs' (a list of input tensors)");
  const json& inputs = request["inputs"];
  if (inputs.size() != 1) bad("expected exactly 1 input tensor, got " + std::to_string(inputs.size()));
  const json& in = inputs[0];
  if (!in.is_object()) bad("inputs[0] must be an object");
  const std::string name = in.contains("name") && in["name"].is_string() ? in["name"].get<std::string>() : "";
  const std::string where = "input '" + name + "'";
  if (!in.contains("datatype") || !in["datatype"].is_string()) bad(where + ": missing 'datatype'");
  const std::string dt = in["datatype"].get<std::string>();
  if (dt != "FP32" && dt != "UINT8") bad(where + ": datatype " + dt + " is not supported (use FP32 or UINT8)");
  if (!in.contains("shape") || !in["shape"].is_array()) bad(where + ": missing 'shape'");
  std::vector<int64_t> s;
  for (const auto& d : in["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 1) bad(where + ": shape entries must be positive integers");
    s.push_back(d.get<int64_t>());
  }
  const bool ok = (s.size() == 4 && s[1] == shape.c && s[2] == shape.h && s[3] == shape.w) ||
                  (s.size() == 3 && shape.c == 1 && s[1] == shape.h && s[2] == shape.w) ||
                  (s.size() == 2 && s[1] == shape.numel());
  if (!ok) {
    std::string got;
    for (auto d : s) got += (got.empty() ? "" : ",") + std::to_string(d);
    bad(where + ": shape [" + got + "] does not match the model's [N," + std::to_string(shape.c) + "," +
        std::to_string(shape.h) + "," + std::to_string(shape.w) + "] (or [N,H,W], [N,C*H*W])");
  }
  const int64_t n = s[0];
  if (n > max_images)
    bad(where + ": " + std::to_string(n) + " images; the limit is " + std::to_string(max_images) + " per request", 413);
  if (!in.contains("data")) bad(where + ": missing 'data'");
  const json& data = in["data"];
  std::vector<float> v;
  v.reserve(size_t(n * shape.numel()));
  if (nesting(data) <= 1) flatten_numbers(data, {n * shape.numel()}, 0, v, where + " data");
  else flatten_numbers(data, s, 0, v, where + " data");
  if (dt == "UINT8") {
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0 || v[i] > 255 || v[i] != std::floor(v[i]))
        bad(where + ": UINT8 value " + std::to_string(v[i]) + " at flat index " + std::to_string(i) + " is not in 0..255");
      v[i] /= 255.0f;
    }
  } else {
    check_pixels(v, where);
  }
  return torch::from_blob(v.data(), {n, shape.c, shape.h, shape.w}, torch::kFloat32).clone();
}

json oip_tensor(const std::string& name, const torch::Tensor& t) {
  const auto c = t.contiguous();
  json shape = json::array();
  for (auto d : c.sizes()) shape.push_back(d);
  json data = json::array();
  std::string dt;
  switch (c.scalar_type()) {
    case torch::kFloat64: {
      dt = "FP64";
      const double* p = c.data_ptr<double>();
      for (int64_t i = 0; i < c.numel(); ++i) data.push_back(p[i]);
      break;
    }
    case torch::kFloat32: {
      dt = "FP32";
      const float* p = c.data_ptr<float>();
      for (int64_t i = 0; i < c.numel(); ++i) data.push_back(p[i]);
      break;
    }
    case torch::kInt64: {
      dt = "INT64";
      const int64_t* p = c.data_ptr<int64_t>();
      for (int64_t i = 0; i < c.numel(); ++i) data.push_back(p[i]);
      break;
    }
    case torch::kBool: {
      dt = "BOOL";
      const bool* p = c.data_ptr<bool>();
      for (int64_t i = 0; i < c.numel(); ++i) data.push_back(p[i]);
      break;
    }
    default:
      TORCH_CHECK(false, "oip_tensor: unsupported dtype ", c.scalar_type());
  }
  return {{"name", name}, {"datatype", dt}, {"shape", shape}, {"data", std::move(data)}};
}

std::vector<std::string> oip_requested_outputs(const json& request, const std::vector<std::string>& available) {
  if (!request.contains("outputs")) return available;
  const json& outs = request["outputs"];
  if (!outs.is_array()) bad("'outputs' must be a list of {\"name\"} objects");
  std::vector<std::string> names;
  for (const auto& o : outs) {
    if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) bad("each of 'outputs' needs a string 'name'");
    const std::string n = o["name"].get<std::string>();
    if (std::find(available.begin(), available.end(), n) == available.end()) {
      std::string av;
      for (const auto& a : available) av += (av.empty() ? "" : ", ") + a;
      bad("unknown output '" + n + "' (this model has: " + av + ")");
    }
    names.push_back(n);
  }
  return names.empty() ? available : names;
}

}  // namespace ebm::serve
