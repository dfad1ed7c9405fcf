// test_io.cpp: tensor files (IDX, NPY, PNG) round trips, malformed-file
// errors (ebm::DataError naming the file and the problem), atomic writes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"

namespace fs = std::filesystem;

namespace {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ebm_test_io_XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = char((v >> (24 - 8 * i)) & 0xff);
  return s;
}

// IDX header: 0 0 type rank, then rank big-endian uint32 dims.
std::string idx_header(int type, const std::vector<uint32_t>& dims) {
  std::string h;
  h.push_back(0);
  h.push_back(0);
  h.push_back(char(type));
  h.push_back(char(dims.size()));
  for (uint32_t d : dims) h += be32(d);
  return h;
}

// NPY v1 file with a given header dict and payload.
std::string npy_file(const std::string& dict, const std::string& payload) {
  std::string h = dict;
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(char(h.size() & 0xff));
  out.push_back(char(h.size() >> 8));
  return out + h + payload;
}

// Expect fn() to throw ebm::DataError whose message names `path` and
// contains every one of `words` (case-sensitive).
void expect_data_error(const std::function<void()>& fn, const std::string& path,
                       const std::vector<std::string>& words) {
  try {
    fn();
    ADD_FAILURE() << "expected ebm::DataError for " << path;
  } catch (const ebm::DataError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    for (const auto& w : words)
      EXPECT_NE(msg.find(w), std::string::npos) << "message lacks '" << w << "': " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ebm::DataError, got another exception: " << e.what();
  }
}

torch::Tensor random_u8(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randint(0, 256, shape, gen, torch::kInt64).to(torch::kUInt8);
}

torch::Tensor random_f32(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::rand(shape, gen);
}

void expect_same(const torch::Tensor& a, const torch::Tensor& b) {
  ASSERT_EQ(a.scalar_type(), b.scalar_type());
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::equal(a, b));
}

}  // namespace

// ---------------------------------------------------------------- round trips

static void ImageIO_TensorFormatByExtension() {
  EXPECT_EQ(ebm::tensor_format("a.idx"), "idx");
  EXPECT_EQ(ebm::tensor_format("a.idx.gz"), "idx");
  EXPECT_EQ(ebm::tensor_format("t10k-images-idx3-ubyte.gz"), "idx");
  EXPECT_EQ(ebm::tensor_format("train-labels-idx1-ubyte"), "idx");
  EXPECT_EQ(ebm::tensor_format("a.NPY"), "npy");
  EXPECT_EQ(ebm::tensor_format("a.png"), "png");
  EXPECT_THROW(ebm::tensor_format("a.txt"), ebm::UsageError);
}

static void ImageIO_IdxRoundTripUbyteAndFloat() {
  TempDir d;
  for (const std::string ext : {".idx", ".idx.gz"}) {
    SCOPED_TRACE(ext);
    // Every rank the format holds (1..4).
    for (int rank = 1; rank <= 4; ++rank) {
      std::vector<int64_t> shape = {3, 5, 7, 2};
      shape.resize(rank);
      auto u8 = random_u8(shape, 10 + rank);
      ebm::write_tensor(d / ("u8" + ext), u8);
      expect_same(ebm::read_tensor(d / ("u8" + ext)), u8);

      auto f = random_f32(shape, 20 + rank) * 200 - 100;  // any finite float, not just [0,1]
      ebm::write_tensor(d / ("f" + ext), f);
      expect_same(ebm::read_tensor(d / ("f" + ext)), f);
    }
  }
  // The .gz file really is gzip (magic 1f 8b) and the plain one is not.
  const std::string gz = ebm::read_file(d / "u8.idx.gz");
  const std::string plain = ebm::read_file(d / "u8.idx");
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(uint8_t(gz[0]), 0x1f);
  EXPECT_EQ(uint8_t(gz[1]), 0x8b);
  EXPECT_EQ(plain.substr(0, 4), std::string("\0\0\x08\x04", 4));
}

static void ImageIO_IdxFloatIsBigEndian() {
  // 1.0f = 0x3F800000 must be stored as 3F 80 00 00 (the IDX convention).
  TempDir d;
  ebm::write_tensor(d / "one.idx", torch::ones({1}));
  const std::string b = ebm::read_file(d / "one.idx");
  ASSERT_EQ(b.size(), 12u);
  EXPECT_EQ(b.substr(0, 8), idx_header(0x0D, {1}));
  EXPECT_EQ(b.substr(8), std::string("\x3F\x80\x00\x00", 4));
}

static void ImageIO_NpyRoundTripFloatAndUint8() {
  TempDir d;
  for (int rank = 1; rank <= 4; ++rank) {
    std::vector<int64_t> shape = {4, 3, 6, 5};
    shape.resize(rank);
    auto f = random_f32(shape, 30 + rank) * 10 - 5;
    ebm::write_tensor(d / "f.npy", f);
    expect_same(ebm::read_tensor(d / "f.npy"), f);
    auto u8 = random_u8(shape, 40 + rank);
    ebm::write_tensor(d / "u.npy", u8);
    expect_same(ebm::read_tensor(d / "u.npy"), u8);
  }
  // Header layout numpy expects: v1, 64-byte aligned data, C order.
  const std::string b = ebm::read_file(d / "u.npy");
  EXPECT_EQ(b.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t hlen = uint8_t(b[8]) | (size_t(uint8_t(b[9])) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_NE(b.find("'fortran_order': False"), std::string::npos);
  EXPECT_NE(b.find("'shape': (4, 3, 6, 5)"), std::string::npos);
}

static void ImageIO_NpyReadsFloat64AsFloat32() {
  TempDir d;
  auto v = torch::tensor({0.25, 0.5, 1.0 / 3.0}, torch::kFloat64);
  write_raw(d / "f8.npy", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                                   std::string(static_cast<const char*>(v.data_ptr()), 24)));
  auto t = ebm::read_tensor(d / "f8.npy");
  EXPECT_EQ(t.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(t, v.to(torch::kFloat32)));
}

static void ImageIO_PngSingleImageRoundTripsExactly() {
  TempDir d;
  auto u8 = random_u8({19, 23}, 7);  // non-square on purpose
  // write_tensor/write_png_grid take [0,1] floats; one image is written without padding.
  ebm::write_tensor(d / "one.png", u8.to(torch::kFloat32).div(255.0).view({1, 1, 19, 23}));
  auto back = ebm::read_tensor(d / "one.png");
  expect_same(back, u8);

  auto img = ebm::read_images(d / "one.png");
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{1, 1, 19, 23}));
  EXPECT_EQ(img.scalar_type(), torch::kFloat32);
  EXPECT_GE(img.min().item<float>(), 0.0f);
  EXPECT_LE(img.max().item<float>(), 1.0f);
  EXPECT_TRUE(torch::allclose(img[0][0], u8.to(torch::kFloat32) / 255.0, 0, 1e-7));

  // encode_png/decode_png are exact inverses at 8 bit.
  expect_same(ebm::decode_png(ebm::encode_png(u8), "mem"), u8);
}

static void ImageIO_PngGridLayout() {
  // 3 images of 4x5, nrow 2, pad 1: (2 rows)x(4+1)+1 = 11 high, 2x(5+1)+1 = 13 wide;
  // padding is mid-grey (0.5 -> 128), tiles are where they should be.
  TempDir d;
  auto x = torch::zeros({3, 1, 4, 5});
  x[1].fill_(1.0);
  x[2].fill_(0.2);
  ebm::write_png_grid(d / "grid.png", x, 2, 1);
  auto g = ebm::read_tensor(d / "grid.png");
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{11, 13}));
  EXPECT_EQ(g[0][0].item<int>(), 128);
  EXPECT_EQ(g[1][1].item<int>(), 0);     // image 0 at (1,1)
  EXPECT_EQ(g[1][7].item<int>(), 255);   // image 1 at (1,7)
  EXPECT_EQ(g[6][1].item<int>(), 51);    // image 2 at (6,1): round(0.2*255)
  EXPECT_EQ(g[6][7].item<int>(), 128);   // empty slot stays grey
}

static void ImageIO_ReadImagesShapesAndScaling() {
  TempDir d;
  auto u8 = random_u8({5, 6, 7}, 3);
  ebm::write_tensor(d / "n.idx", u8);
  auto a = ebm::read_images(d / "n.idx");
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{5, 1, 6, 7}));
  EXPECT_TRUE(torch::allclose(a.squeeze(1), u8.to(torch::kFloat32) / 255.0));

  auto f = random_f32({2, 3, 6, 7}, 4);
  ebm::write_tensor(d / "f.npy", f);
  expect_same(ebm::read_images(d / "f.npy"), f);  // floats are taken as is

  // Float pixels outside [0,1] are an error naming the offending index.
  auto bad = f.clone();
  bad.view(-1)[17] = 1.5f;
  ebm::write_tensor(d / "bad.npy", bad);
  expect_data_error([&] { ebm::read_images(d / "bad.npy"); }, d / "bad.npy", {"outside [0,1]", "17"});
}

// ---------------------------------------------------------------- malformed files

static void ImageIOErrors_IdxTruncatedHeader() {
  TempDir d;
  write_raw(d / "h1.idx", std::string("\0\0", 2));  // not even the magic
  expect_data_error([&] { ebm::read_tensor(d / "h1.idx"); }, d / "h1.idx", {"truncated"});
  write_raw(d / "h2.idx", idx_header(0x08, {10, 28, 28}).substr(0, 9));  // dims cut short
  expect_data_error([&] { ebm::read_tensor(d / "h2.idx"); }, d / "h2.idx", {"truncated", "header"});
}

static void ImageIOErrors_IdxTruncatedPayload() {
  TempDir d;
  write_raw(d / "p.idx", idx_header(0x08, {2, 3, 3}) + std::string(17, '\x01'));
  expect_data_error([&] { ebm::read_tensor(d / "p.idx"); }, d / "p.idx", {"truncated", "18", "17"});
  write_raw(d / "pf.idx", idx_header(0x0D, {4}) + std::string(15, '\0'));
  expect_data_error([&] { ebm::read_tensor(d / "pf.idx"); }, d / "pf.idx", {"truncated"});
}

static void ImageIOErrors_IdxExtraBytes() {
  TempDir d;
  write_raw(d / "x.idx", idx_header(0x08, {2, 3}) + std::string(6 + 5, '\x01'));
  expect_data_error([&] { ebm::read_tensor(d / "x.idx"); }, d / "x.idx", {"5 extra bytes"});
}

static void ImageIOErrors_IdxWrongMagic() {
  TempDir d;
  write_raw(d / "m.idx", std::string("\x01\x02\x08\x01", 4) + be32(1) + "a");
  expect_data_error([&] { ebm::read_tensor(d / "m.idx"); }, d / "m.idx", {"magic"});
  // A bad rank byte (0 or > 4) is also a header problem.
  write_raw(d / "r.idx", std::string("\0\0\x08\x00", 4));
  expect_data_error([&] { ebm::read_tensor(d / "r.idx"); }, d / "r.idx", {"rank"});
}

static void ImageIOErrors_IdxDimsOverflow() {
  TempDir d;
  const uint32_t big = 0xFFFFFFFFu;
  write_raw(d / "o.idx", idx_header(0x08, {big, big, big, big}) + std::string(64, '\0'));
  expect_data_error([&] { ebm::read_tensor(d / "o.idx"); }, d / "o.idx", {"overflow"});
  // Float32 type and no payload at all: still reported as an overflow, not a truncation.
  write_raw(d / "of.idx", idx_header(0x0D, {big, big, big, big}));
  expect_data_error([&] { ebm::read_tensor(d / "of.idx"); }, d / "of.idx", {"overflow"});
}

static void ImageIOErrors_IdxUnsupportedDtype() {
  TempDir d;
  write_raw(d / "s.idx", idx_header(0x0B, {3}) + std::string(6, '\0'));  // short
  expect_data_error([&] { ebm::read_tensor(d / "s.idx"); }, d / "s.idx", {"dtype", "0x0B", "short"});
  write_raw(d / "q.idx", idx_header(0x42, {3}) + std::string(3, '\0'));  // not a type at all
  expect_data_error([&] { ebm::read_tensor(d / "q.idx"); }, d / "q.idx", {"dtype", "0x42"});
}

static void ImageIOErrors_IdxCorruptAndTruncatedGzip() {
  TempDir d;
  ebm::write_tensor(d / "ok.idx.gz", random_u8({8, 28, 28}, 5));
  const std::string gz = ebm::read_file(d / "ok.idx.gz");
  ASSERT_GT(gz.size(), 100u);
  std::string bad = gz;
  for (size_t i = 20; i < 60; ++i) bad[i] = char(bad[i] ^ 0x5A);  // mangle the deflate stream
  write_raw(d / "bad.idx.gz", bad);
  expect_data_error([&] { ebm::read_tensor(d / "bad.idx.gz"); }, d / "bad.idx.gz", {"gzip"});
  write_raw(d / "cut.idx.gz", gz.substr(0, gz.size() / 2));
  expect_data_error([&] { ebm::read_tensor(d / "cut.idx.gz"); }, d / "cut.idx.gz", {"gzip"});
  // Only the CRC trailer changed: still corrupt.
  std::string crc = gz;
  crc[crc.size() - 6] = char(crc[crc.size() - 6] ^ 1);
  write_raw(d / "crc.idx.gz", crc);
  expect_data_error([&] { ebm::read_tensor(d / "crc.idx.gz"); }, d / "crc.idx.gz", {"gzip"});
}

TEST(ImageIOErrors, NanPixels) {
  TempDir d;
  auto f = random_f32({2, 4, 4}, 6);
  f[1][2][3] = std::numeric_limits<float>::quiet_NaN();
  for (const std::string name : {"nan.idx", "nan.npy", "nan.idx.gz"}) {
    SCOPED_TRACE(name);
    ebm::write_tensor(d / name, f);
    expect_data_error([&] { ebm::read_tensor(d / name); }, d / name, {"NaN", "27"});
    expect_data_error([&] { ebm::read_images(d / name); }, d / name, {"NaN"});
    ebm::ReadOptions ro;
    ro.allow_nan = true;
    auto t = ebm::read_tensor(d / name, ro);
    EXPECT_TRUE(std::isnan(t[1][2][3].item<float>()));
    EXPECT_EQ(torch::isnan(t).sum().item<int64_t>(), 1);
    auto img = ebm::read_images(d / name, ro);  // allowed NaN is not "outside [0,1]"
    EXPECT_EQ(img.sizes(), (std::vector<int64_t>{2, 1, 4, 4}));
  }
  // Inf is rejected just like NaN.
  f[1][2][3] = std::numeric_limits<float>::infinity();
  ebm::write_tensor(d / "inf.npy", f);
  expect_data_error([&] { ebm::read_tensor(d / "inf.npy"); }, d / "inf.npy", {"Inf"});
}

static void ImageIOErrors_NpyWrongMagicAndTruncation() {
  TempDir d;
  write_raw(d / "m.npy", std::string("\x93NUMPZ\x01\x00\x10\x00", 10) + std::string(16, ' '));
  expect_data_error([&] { ebm::read_tensor(d / "m.npy"); }, d / "m.npy", {"magic"});
  write_raw(d / "short.npy", std::string("\x93NUM", 4));
  expect_data_error([&] { ebm::read_tensor(d / "short.npy"); }, d / "short.npy", {"NPY"});

  const std::string good =
      npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", std::string(24, '\0'));
  write_raw(d / "h.npy", good.substr(0, 40));  // header cut in the middle
  expect_data_error([&] { ebm::read_tensor(d / "h.npy"); }, d / "h.npy", {"truncated", "header"});
  write_raw(d / "p.npy", good.substr(0, good.size() - 5));
  expect_data_error([&] { ebm::read_tensor(d / "p.npy"); }, d / "p.npy", {"truncated", "24", "19"});
  write_raw(d / "x.npy", good + "abc");
  expect_data_error([&] { ebm::read_tensor(d / "x.npy"); }, d / "x.npy", {"3 extra bytes"});
}

static void ImageIOErrors_NpyUnsupportedDtypeFortranOverflow() {
  TempDir d;
  write_raw(d / "i4.npy", npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
                                   std::string(8, '\0')));
  expect_data_error([&] { ebm::read_tensor(d / "i4.npy"); }, d / "i4.npy", {"dtype", "<i4"});
  write_raw(d / "be.npy", npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                                   std::string(8, '\0')));
  expect_data_error([&] { ebm::read_tensor(d / "be.npy"); }, d / "be.npy", {"dtype", ">f4"});
  write_raw(d / "f.npy", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                  std::string(16, '\0')));
  expect_data_error([&] { ebm::read_tensor(d / "f.npy"); }, d / "f.npy", {"Fortran"});
  write_raw(d / "o.npy",
            npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (4294967295, 4294967295, "
                     "4294967295, 4294967295), }",
                     std::string(16, '\0')));
  expect_data_error([&] { ebm::read_tensor(d / "o.npy"); }, d / "o.npy", {"overflow"});
  write_raw(d / "o2.npy",
            npy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,), }",
                     std::string(16, '\0')));
  expect_data_error([&] { ebm::read_tensor(d / "o2.npy"); }, d / "o2.npy", {"overflow"});
}

static void ImageIOErrors_CorruptPng() {
  TempDir d;
  auto u8 = random_u8({28, 28}, 8);  // random pixels compress badly: a long IDAT
  const std::string png = ebm::encode_png(u8);
  ASSERT_GT(png.size(), 400u);
  std::string bad = png;
  for (size_t i = 100; i < 140; ++i) bad[i] = char(bad[i] ^ 0x33);  // inside IDAT
  write_raw(d / "bad.png", bad);
  expect_data_error([&] { ebm::read_tensor(d / "bad.png"); }, d / "bad.png", {"PNG"});
  write_raw(d / "cut.png", png.substr(0, png.size() / 2));
  expect_data_error([&] { ebm::read_tensor(d / "cut.png"); }, d / "cut.png", {"PNG"});
  write_raw(d / "junk.png", "this is not a png at all");
  expect_data_error([&] { ebm::read_images(d / "junk.png"); }, d / "junk.png", {"PNG"});
}

static void ImageIOErrors_MissingFile() {
  TempDir d;
  expect_data_error([&] { ebm::read_tensor(d / "nope.npy"); }, d / "nope.npy", {"cannot open"});
}

// ---------------------------------------------------------------- atomic writes

static void ImageIOAtomic_MissingDirectoryThrowsAndLeavesNothing() {
  TempDir d;
  const std::string target = d / "no/such/dir/out.npy";
  EXPECT_THROW(ebm::write_tensor(target, torch::zeros({2, 2})), ebm::DataError);
  EXPECT_THROW(ebm::write_png_grid(d / "no/x.png", torch::zeros({1, 1, 4, 4})), ebm::DataError);
  EXPECT_THROW(ebm::write_file_atomic(d / "no/x.bin", "abc"), ebm::DataError);
  EXPECT_FALSE(fs::exists(d / "no"));
  EXPECT_TRUE(fs::is_empty(d.path));  // no temp files either
}

static void ImageIOAtomic_OverwriteReplacesWholeFile() {
  TempDir d;
  const std::string p = d / "t.npy";
  auto big = random_f32({64, 1, 28, 28}, 9);
  ebm::write_tensor(p, big);
  const auto big_size = fs::file_size(p);
  auto small = random_f32({2, 3}, 10);
  ebm::write_tensor(p, small);
  EXPECT_LT(fs::file_size(p), big_size);  // no tail of the old file left behind
  expect_same(ebm::read_tensor(p), small);
  // The same for raw bytes, and only the target remains in the folder.
  ebm::write_file_atomic(d / "raw.bin", std::string(1000, 'x'));
  ebm::write_file_atomic(d / "raw.bin", "short");
  EXPECT_EQ(ebm::read_file(d / "raw.bin"), "short");
  int n = 0;
  for (auto& e : fs::directory_iterator(d.path)) {
    (void)e;
    ++n;
  }
  EXPECT_EQ(n, 2);
}

static void ImageIOAtomic_FailedWriteKeepsExistingFile() {
  // Writing a tensor the writer rejects (int32) must leave the old file intact.
  TempDir d;
  const std::string p = d / "keep.npy";
  auto t = random_f32({3, 3}, 11);
  ebm::write_tensor(p, t);
  EXPECT_ANY_THROW(ebm::write_tensor(p, torch::zeros({2}, torch::kInt32)));
  expect_same(ebm::read_tensor(p), t);
  // A target that is a directory: rename fails, nothing else is touched.
  fs::create_directory(d / "adir.npy");
  EXPECT_THROW(ebm::write_tensor(d / "adir.npy", t), ebm::DataError);
  EXPECT_TRUE(fs::is_directory(d / "adir.npy"));
  int n = 0;
  for (auto& e : fs::directory_iterator(d.path)) {
    (void)e;
    ++n;
  }
  EXPECT_EQ(n, 2);  // keep.npy and adir.npy; no leftover temp file
}

// ---------------------------------------------------------------- test cases
// Each ctest entry is its own process and LibTorch takes ~0.7 s to load, so
// related checks share one TEST; SCOPED_TRACE names the check that failed.

TEST(ImageIO, IdxRoundTrip) {
  {
    SCOPED_TRACE("TensorFormatByExtension");
    ImageIO_TensorFormatByExtension();
  }
  {
    SCOPED_TRACE("IdxRoundTripUbyteAndFloat");
    ImageIO_IdxRoundTripUbyteAndFloat();
  }
  {
    SCOPED_TRACE("IdxFloatIsBigEndian");
    ImageIO_IdxFloatIsBigEndian();
  }
}

TEST(ImageIO, NpyRoundTrip) {
  {
    SCOPED_TRACE("NpyRoundTripFloatAndUint8");
    ImageIO_NpyRoundTripFloatAndUint8();
  }
  {
    SCOPED_TRACE("NpyReadsFloat64AsFloat32");
    ImageIO_NpyReadsFloat64AsFloat32();
  }
}

TEST(ImageIO, PngRoundTripAndReadImages) {
  {
    SCOPED_TRACE("PngSingleImageRoundTripsExactly");
    ImageIO_PngSingleImageRoundTripsExactly();
  }
  {
    SCOPED_TRACE("PngGridLayout");
    ImageIO_PngGridLayout();
  }
  {
    SCOPED_TRACE("ReadImagesShapesAndScaling");
    ImageIO_ReadImagesShapesAndScaling();
  }
}

TEST(ImageIOErrors, MalformedIdx) {
  {
    SCOPED_TRACE("IdxTruncatedHeader");
    ImageIOErrors_IdxTruncatedHeader();
  }
  {
    SCOPED_TRACE("IdxTruncatedPayload");
    ImageIOErrors_IdxTruncatedPayload();
  }
  {
    SCOPED_TRACE("IdxExtraBytes");
    ImageIOErrors_IdxExtraBytes();
  }
  {
    SCOPED_TRACE("IdxWrongMagic");
    ImageIOErrors_IdxWrongMagic();
  }
  {
    SCOPED_TRACE("IdxDimsOverflow");
    ImageIOErrors_IdxDimsOverflow();
  }
  {
    SCOPED_TRACE("IdxUnsupportedDtype");
    ImageIOErrors_IdxUnsupportedDtype();
  }
}

TEST(ImageIOErrors, MalformedNpy) {
  {
    SCOPED_TRACE("NpyWrongMagicAndTruncation");
    ImageIOErrors_NpyWrongMagicAndTruncation();
  }
  {
    SCOPED_TRACE("NpyUnsupportedDtypeFortranOverflow");
    ImageIOErrors_NpyUnsupportedDtypeFortranOverflow();
  }
}

TEST(ImageIOErrors, CorruptGzipPngAndMissing) {
  {
    SCOPED_TRACE("IdxCorruptAndTruncatedGzip");
    ImageIOErrors_IdxCorruptAndTruncatedGzip();
  }
  {
    SCOPED_TRACE("CorruptPng");
    ImageIOErrors_CorruptPng();
  }
  {
    SCOPED_TRACE("MissingFile");
    ImageIOErrors_MissingFile();
  }
}

TEST(ImageIOAtomic, Writes) {
  {
    SCOPED_TRACE("MissingDirectoryThrowsAndLeavesNothing");
    ImageIOAtomic_MissingDirectoryThrowsAndLeavesNothing();
  }
  {
    SCOPED_TRACE("OverwriteReplacesWholeFile");
    ImageIOAtomic_OverwriteReplacesWholeFile();
  }
  {
    SCOPED_TRACE("FailedWriteKeepsExistingFile");
    ImageIOAtomic_FailedWriteKeepsExistingFile();
  }
}
