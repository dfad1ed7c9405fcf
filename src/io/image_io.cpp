#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"

#include <png.h>
#include <zlib.h>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <regex>
#include <sstream>

namespace ebm {
namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw DataError("'" + path + "': " + what);
}

// ---------------------------------------------------------------- gzip
bool is_gzip(const std::string& b) {
  return b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0x1f &&
         static_cast<unsigned char>(b[1]) == 0x8b;
}

// A gzip stream never inflates to more than this (fashion-mnist's largest file is 47 MB).
constexpr uint64_t kMaxInflated = uint64_t(1) << 30;

// Inflate `in`; `limit(out)` gives the most bytes the stream may inflate to,
// given what it has inflated so far (the IDX header's size, once known). A
// stream that inflates to more (a gzip bomb) is an error, found after at most
// one 64 KiB chunk too many.
std::string gunzip(const std::string& in, const std::string& path,
                   const std::function<uint64_t(const std::string&)>& limit) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(path, "zlib init failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[1 << 16];
  int rc = Z_OK;
  try {
    while (rc == Z_OK) {
      zs.next_out = reinterpret_cast<Bytef*>(buf);
      zs.avail_out = sizeof(buf);
      rc = inflate(&zs, Z_NO_FLUSH);
      out.append(buf, sizeof(buf) - zs.avail_out);
      // A corrupt or cut stream is reported as such (below), not by what its garbage declares.
      if (rc != Z_OK && rc != Z_STREAM_END) break;
      const uint64_t most = limit(out);
      if (out.size() > most)
        fail(path, "gzip stream inflates to more than the " + std::to_string(most) + " bytes " +
                       (most == kMaxInflated ? std::string("ebmkit inflates") : "its IDX header declares"));
    }
  } catch (...) {
    inflateEnd(&zs);
    throw;
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) fail(path, "truncated or corrupt gzip stream");
  return out;
}

std::string gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(&out[0]);
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  TORCH_INTERNAL_ASSERT(rc == Z_STREAM_END, "deflate failed");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Product of dims with overflow detection; the limit keeps a corrupt header
// from asking for an absurd allocation.
uint64_t checked_numel(const std::vector<int64_t>& dims, const std::string& path) {
  constexpr uint64_t kLimit = uint64_t(1) << 34;
  uint64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) fail(path, "negative dimension " + std::to_string(d));
    if (d != 0 && n > kLimit / static_cast<uint64_t>(d))
      fail(path, "dimensions overflow (product exceeds 2^34 elements)");
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

// An empty tensor (a zero dim) passes checked_numel whatever its other dims,
// but LibTorch still computes strides from them: 0 x 2^32 x 2^32 overflows
// int64_t inside from_blob. Bound the product of the nonzero dims as well.
void check_empty_dims(const std::vector<int64_t>& dims, const std::string& path) {
  std::vector<int64_t> nonzero;
  for (int64_t d : dims)
    if (d != 0) nonzero.push_back(d);
  if (nonzero.size() != dims.size()) checked_numel(nonzero, path);
}

std::string dims_str(const std::vector<int64_t>& d) {
  std::ostringstream s;
  for (size_t i = 0; i < d.size(); ++i) s << (i ? "x" : "") << d[i];
  return s.str();
}

void check_payload(uint64_t want, size_t have, const std::vector<int64_t>& dims,
                   const std::string& path) {
  if (have < want)
    fail(path, "truncated: dims " + dims_str(dims) + " need " + std::to_string(want) +
                   " data bytes, file has " + std::to_string(have));
  if (have > want)
    fail(path, "dims " + dims_str(dims) + " need " + std::to_string(want) +
                   " data bytes, but file has " + std::to_string(have - want) +
                   " extra bytes");
}

uint32_t be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// ---------------------------------------------------------------- IDX
// The bytes (header + data) that the IDX header at the start of `b` declares;
// kMaxInflated while the header is incomplete or invalid (parse_idx reports it).
uint64_t idx_declared_size(const std::string& b, const std::string& path) {
  auto* u = reinterpret_cast<const unsigned char*>(b.data());
  if (b.size() < 4 || u[0] != 0 || u[1] != 0 || u[3] < 1 || u[3] > 4) return kMaxInflated;
  const size_t header = 4 + 4 * size_t(u[3]);
  const uint64_t elem = u[2] == 0x08 ? 1 : u[2] == 0x0D ? 4 : 0;
  if (b.size() < header || elem == 0) return kMaxInflated;
  std::vector<int64_t> dims(u[3]);
  for (int i = 0; i < u[3]; ++i) dims[i] = be32(u + 4 + 4 * i);
  const uint64_t need = header + checked_numel(dims, path) * elem;
  if (need > kMaxInflated)
    fail(path, "IDX header declares " + std::to_string(need) + " bytes, over the " + std::to_string(kMaxInflated) +
                   "-byte limit for gzip-compressed IDX files");
  return need;
}

torch::Tensor parse_idx(const std::string& raw, const std::string& path) {
  const std::string b =
      is_gzip(raw) ? gunzip(raw, path, [&](const std::string& so_far) { return idx_declared_size(so_far, path); })
                   : raw;
  if (b.size() < 4) fail(path, "truncated IDX header (" + std::to_string(b.size()) + " bytes)");
  auto* u = reinterpret_cast<const unsigned char*>(b.data());
  if (u[0] != 0 || u[1] != 0) fail(path, "wrong magic: not an IDX file (first bytes must be 0 0)");
  int type = u[2], nd = u[3];
  if (nd < 1 || nd > 4) fail(path, "IDX rank " + std::to_string(nd) + " unsupported (1..4)");
  size_t header = 4 + 4 * size_t(nd);
  if (b.size() < header) fail(path, "truncated IDX header");
  std::vector<int64_t> dims(nd);
  for (int i = 0; i < nd; ++i) dims[i] = be32(u + 4 + 4 * i);
  uint64_t n = checked_numel(dims, path);
  check_empty_dims(dims, path);
  size_t have = b.size() - header;
  const unsigned char* p = u + header;
  if (type == 0x08) {
    check_payload(n, have, dims, path);
    return torch::from_blob(const_cast<unsigned char*>(p), dims, torch::kUInt8).clone();
  }
  if (type == 0x0D) {
    check_payload(n * 4, have, dims, path);
    auto t = torch::empty(dims, torch::kFloat32);
    auto* dst = reinterpret_cast<uint32_t*>(t.data_ptr<float>());
    for (uint64_t i = 0; i < n; ++i) dst[i] = be32(p + 4 * i);
    return t;
  }
  static const char* names[] = {"", "", "", "", "", "", "", "", "ubyte", "sbyte", "", "short",
                                "int", "float32", "float64"};
  std::string tn = type <= 0x0E && *names[type] ? names[type] : "unknown";
  fail(path, "unsupported IDX dtype 0x" + [&] {
    char h[8];
    std::snprintf(h, sizeof h, "%02X", type);
    return std::string(h);
  }() + " (" + tn + "); ebmkit reads ubyte (0x08) and float32 (0x0D)");
}

std::string make_idx(const torch::Tensor& t0, const std::string& path) {
  auto t = t0.contiguous();
  if (t.dim() < 1 || t.dim() > 4) throw UsageError("'" + path + "': IDX holds rank 1..4, got " + std::to_string(t.dim()));
  int type;
  if (t.scalar_type() == torch::kUInt8) type = 0x08;
  else if (t.scalar_type() == torch::kFloat32) type = 0x0D;
  else throw UsageError("'" + path + "': IDX writer takes uint8 or float32, got " + std::string(c10::toString(t.scalar_type())));
  std::string out;
  out.push_back(0); out.push_back(0); out.push_back(char(type)); out.push_back(char(t.dim()));
  for (int64_t d : t.sizes())
    for (int s = 24; s >= 0; s -= 8) out.push_back(char((uint64_t(d) >> s) & 0xff));
  if (type == 0x08) {
    out.append(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), t.numel());
  } else {
    const auto* src = reinterpret_cast<const uint32_t*>(t.data_ptr<float>());
    size_t off = out.size();
    out.resize(off + 4 * t.numel());
    for (int64_t i = 0; i < t.numel(); ++i)
      for (int s = 0; s < 4; ++s) out[off + 4 * i + s] = char((src[i] >> (24 - 8 * s)) & 0xff);
  }
  return ends_with(path, ".gz") ? gzip(out) : out;
}

// ---------------------------------------------------------------- NPY
torch::Tensor parse_npy(const std::string& b, const std::string& path) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) fail(path, "wrong magic: not an NPY file");
  int major = static_cast<unsigned char>(b[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = size_t(uint8_t(b[8])) | (size_t(uint8_t(b[9])) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) fail(path, "truncated NPY header");
    hlen = 0;
    for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | uint8_t(b[8 + i]);
    hstart = 12;
  } else {
    fail(path, "unsupported NPY version " + std::to_string(major));
  }
  if (b.size() < hstart + hlen) fail(path, "truncated NPY header");
  std::string h = b.substr(hstart, hlen);
  std::smatch m;
  if (!std::regex_search(h, m, std::regex("'descr'\\s*:\\s*'([^']*)'"))) fail(path, "NPY header has no descr");
  std::string descr = m[1];
  if (std::regex_search(h, m, std::regex("'fortran_order'\\s*:\\s*True")))
    fail(path, "Fortran-order NPY arrays are unsupported; save with C order");
  if (!std::regex_search(h, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)"))) fail(path, "NPY header has no shape");
  std::vector<int64_t> dims;
  const std::string shp = m[1];
  // "(2, 28, 28)", "(10,)" or "()": integers separated by commas (a sign is
  // read, so that checked_numel refuses a negative dimension).
  std::stringstream items(shp);
  std::string item;
  const std::regex integer("\\s*(-?\\d+)\\s*"), blank("\\s*");
  while (std::getline(items, item, ',')) {
    std::smatch d;
    if (std::regex_match(item, blank)) continue;  // the trailing comma of "(10,)"
    if (!std::regex_match(item, d, integer)) fail(path, "NPY shape (" + shp + ") is not a tuple of integers");
    if (d[1].length() > 12) fail(path, "dimensions overflow");
    dims.push_back(std::stoll(d[1]));
  }
  uint64_t n = checked_numel(dims, path);
  check_empty_dims(dims, path);
  size_t have = b.size() - hstart - hlen;
  const char* p = b.data() + hstart + hlen;
  if (descr == "|u1" || descr == "<u1" || descr == "u1") {
    check_payload(n, have, dims, path);
    return torch::from_blob(const_cast<char*>(p), dims, torch::kUInt8).clone();
  }
  if (descr == "<f4") {
    check_payload(n * 4, have, dims, path);
    return torch::from_blob(const_cast<char*>(p), dims, torch::kFloat32).clone();
  }
  if (descr == "<f8") {
    check_payload(n * 8, have, dims, path);
    return torch::from_blob(const_cast<char*>(p), dims, torch::kFloat64).to(torch::kFloat32);
  }
  fail(path, "unsupported NPY dtype '" + descr + "'; ebmkit reads <f4, <f8 and |u1");
}

std::string make_npy(const torch::Tensor& t0, const std::string& path) {
  auto t = t0.contiguous();
  std::string descr;
  if (t.scalar_type() == torch::kUInt8) descr = "|u1";
  else if (t.scalar_type() == torch::kFloat32) descr = "<f4";
  else throw UsageError("'" + path + "': NPY writer takes uint8 or float32, got " + std::string(c10::toString(t.scalar_type())));
  std::string shape = "(";
  for (int64_t d : t.sizes()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 1), shape.back() = ')';
  else shape += ")";
  if (t.dim() == 1) shape = "(" + std::to_string(t.size(0)) + ",)";
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1); out.push_back(0);
  out.push_back(char(h.size() & 0xff)); out.push_back(char(h.size() >> 8));
  out += h;
  out.append(reinterpret_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

}  // namespace

// ---------------------------------------------------------------- PNG
std::string encode_png(const torch::Tensor& hw) {
  TORCH_CHECK(hw.dim() == 2 && hw.scalar_type() == torch::kUInt8, "encode_png wants [H,W] uint8, got ", hw.sizes());
  auto t = hw.contiguous();
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(t.size(1));
  img.height = static_cast<png_uint_32>(t.size(0));
  img.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&img, nullptr, &size, 0, t.data_ptr<uint8_t>(), 0, nullptr))
    throw DataError(std::string("PNG encode failed: ") + img.message);
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&img, &out[0], &size, 0, t.data_ptr<uint8_t>(), 0, nullptr))
    throw DataError(std::string("PNG encode failed: ") + img.message);
  out.resize(size);
  return out;
}

torch::Tensor decode_png(const std::string& bytes, const std::string& name) {
  // Every chunk must fit in the bytes there are: libpng allocates a text or
  // unknown chunk's declared length (up to 2 GiB) before it reads the chunk,
  // so a 70-byte file could otherwise ask for gigabytes.
  if (bytes.size() >= 8 && bytes.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) == 0) {
    const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
    for (size_t at = 8; at + 8 <= bytes.size();) {
      const uint64_t len = be32(u + at);
      if (len + 12 > bytes.size() - at)
        fail(name, "truncated PNG: the chunk at byte " + std::to_string(at) + " claims " + std::to_string(len) +
                       " bytes, " + std::to_string(bytes.size() - at - 8) + " remain");
      if (bytes.compare(at + 4, 4, "IEND") == 0) break;
      at += 12 + len;
    }
  }
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size()))
    fail(name, std::string("not a readable PNG: ") + img.message);
  img.format = PNG_FORMAT_GRAY;
  // Without a gAMA or sRGB chunk libpng takes 16-bit samples as linear light and
  // gamma-encodes them (0x8080 would read as 186, not 128); they are the same
  // code values as 8-bit ones, scaled by 257.
  img.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  if (uint64_t(img.width) * img.height > (uint64_t(1) << 28)) {
    png_image_free(&img);
    fail(name, "PNG dimensions too large");
  }
  // Deflate inflates at most 1032:1, and every pixel takes at least one bit
  // plus a filter byte per row: a file too small for its claimed size is
  // truncated or a decompression bomb, refused before the image is allocated.
  const uint64_t least_raw = uint64_t(img.height) * (1 + (uint64_t(img.width) + 7) / 8);
  if (least_raw > 1032 * uint64_t(bytes.size()) + 1024) {
    png_image_free(&img);
    fail(name, "PNG claims " + std::to_string(img.width) + "x" + std::to_string(img.height) + " pixels, more than its " +
                   std::to_string(bytes.size()) + " bytes can hold (truncated, or a decompression bomb)");
  }
  auto t = torch::empty({int64_t(img.height), int64_t(img.width)}, torch::kUInt8);
  if (!png_image_finish_read(&img, nullptr, t.data_ptr<uint8_t>(), 0, nullptr))
    fail(name, std::string("corrupt PNG: ") + img.message);
  return t;
}

std::string tensor_format(const std::string& path) {
  std::string p = path;
  std::transform(p.begin(), p.end(), p.begin(), ::tolower);
  if (ends_with(p, ".npy")) return "npy";
  if (ends_with(p, ".png")) return "png";
  if (ends_with(p, ".idx") || ends_with(p, ".idx.gz") || ends_with(p, "ubyte") ||
      ends_with(p, "ubyte.gz") || ends_with(p, ".gz") || p.find("-idx") != std::string::npos)
    return "idx";
  throw UsageError("'" + path + "': unknown tensor file type (use .idx, .idx.gz, .npy or .png)");
}

torch::Tensor read_tensor(const std::string& path, const ReadOptions& opts) {
  const std::string fmt = tensor_format(path);
  const std::string bytes = read_file(path);
  torch::Tensor t;
  if (fmt == "idx") t = parse_idx(bytes, path);
  else if (fmt == "npy") t = parse_npy(bytes, path);
  else t = decode_png(bytes, path);
  if (!opts.allow_nan && t.is_floating_point()) {
    auto bad = ~torch::isfinite(t);
    int64_t nbad = bad.sum().item<int64_t>();
    if (nbad > 0) {
      int64_t first = bad.flatten().nonzero()[0].item<int64_t>();
      fail(path, std::to_string(nbad) + " NaN/Inf values (first at flat index " +
                     std::to_string(first) + "); NaN pixels are not allowed");
    }
  }
  return t;
}

torch::Tensor read_images(const std::string& path, const ReadOptions& opts) {
  torch::Tensor t = read_tensor(path, opts);
  if (t.scalar_type() == torch::kUInt8) {
    t = t.to(torch::kFloat32).div_(255.0);
  } else {
    auto fin = torch::isfinite(t);
    auto out = ((t < 0) | (t > 1)) & fin;
    if (out.any().item<bool>()) {
      int64_t first = out.flatten().nonzero()[0].item<int64_t>();
      fail(path, "float pixel " + std::to_string(t.flatten()[first].item<float>()) +
                     " at flat index " + std::to_string(first) + " is outside [0,1]");
    }
  }
  if (t.numel() == 0) fail(path, "holds no images (dims " + dims_str(t.sizes().vec()) + ")");
  switch (t.dim()) {
    case 2: return t.unsqueeze(0).unsqueeze(0);
    case 3: return t.unsqueeze(1);
    case 4: return t;
    default:
      fail(path, "images need rank 2 ([H,W]), 3 ([N,H,W]) or 4 ([N,C,H,W]); got rank " +
                     std::to_string(t.dim()));
  }
}

void write_png_grid(const std::string& path, const torch::Tensor& x0, int64_t nrow, int64_t pad) {
  torch::Tensor x = x0.detach().to(torch::kCPU, torch::kFloat32);
  if (x.dim() == 2) x = x.unsqueeze(0).unsqueeze(0);
  if (x.dim() == 3) x = x.unsqueeze(1);
  TORCH_CHECK(x.dim() == 4 && x.size(0) > 0, "write_png_grid: images must be [N,C,H,W], got ", x.sizes());
  if (x.size(1) == 3) x = (0.299 * x.select(1, 0) + 0.587 * x.select(1, 1) + 0.114 * x.select(1, 2)).unsqueeze(1);
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  if (nrow <= 0) nrow = static_cast<int64_t>(std::ceil(std::sqrt(double(n))));
  const int64_t rows = (n + nrow - 1) / nrow;
  if (n == 1) pad = 0;
  auto grid = torch::full({rows * (h + pad) + pad, nrow * (w + pad) + pad}, 0.5f);
  x = torch::nan_to_num(x, 0.0).clamp(0, 1);
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = i / nrow, c = i % nrow;
    grid.narrow(0, pad + r * (h + pad), h).narrow(1, pad + c * (w + pad), w).copy_(x[i][0]);
  }
  auto u8 = grid.mul(255).round_().to(torch::kUInt8);
  write_file_atomic(path, encode_png(u8));
}

void write_tensor(const std::string& path, const torch::Tensor& t0) {
  const std::string fmt = tensor_format(path);
  torch::Tensor t = t0.detach().to(torch::kCPU);
  if (fmt == "png") return write_png_grid(path, t.to(torch::kFloat32));
  if (t.scalar_type() == torch::kFloat64) t = t.to(torch::kFloat32);
  write_file_atomic(path, fmt == "idx" ? make_idx(t, path) : make_npy(t, path));
}

}  // namespace ebm
