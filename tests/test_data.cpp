// test_data.cpp: datasets by name (fashion-mnist, mnist and its fixed
// stratified split, synthetic OOD sets, vflip:/invert:, files) and
// stratified_holdout.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {
using ebm::test::have_data_file;

// $EBM_DATA, else <repo>/data.
std::string data_root() {
  const char* d = std::getenv("EBM_DATA");
  return (d && *d) ? std::string(d) : std::string(EBM_SOURCE_DIR) + "/data";
}


#define REQUIRE_DATA(rel)                                                          \
  do {                                                                             \
    if (!have_data_file(rel)) GTEST_SKIP() << "dataset " << data_root() << "/" << rel        \
                                 << " absent (set EBM_DATA or run scripts/setup)"; \
  } while (0)

ebm::DatasetOptions opts(const std::string& split, int64_t n = -1) {
  ebm::DatasetOptions o;
  o.split = split;
  o.n = n;
  o.root = data_root();
  return o;
}

// FNV-1a 64 of each image's float bytes: [N,...] -> N hashes.
std::vector<uint64_t> row_hashes(const torch::Tensor& images) {
  auto x = images.contiguous().view({images.size(0), -1});
  const int64_t n = x.size(0), m = x.size(1);
  const auto* p = reinterpret_cast<const unsigned char*>(x.data_ptr<float>());
  std::vector<uint64_t> h(n);
  for (int64_t i = 0; i < n; ++i) {
    uint64_t v = 1469598103934665603ull;
    for (int64_t j = 0; j < m * 4; ++j) v = (v ^ p[i * m * 4 + j]) * 1099511628211ull;
    h[i] = v;
  }
  return h;
}

// Multiset of (image hash, label) pairs.
std::vector<std::pair<uint64_t, int64_t>> pairs(const ebm::Dataset& ds) {
  auto h = row_hashes(ds.images);
  auto l = ds.labels.contiguous();
  std::vector<std::pair<uint64_t, int64_t>> out;
  for (size_t i = 0; i < h.size(); ++i) out.emplace_back(h[i], l[i].item<int64_t>());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<int64_t> class_counts(const torch::Tensor& labels, int64_t k) {
  auto c = torch::bincount(labels, {}, k);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + k);
}

std::vector<int64_t> to_vec(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kInt64);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void expect_images(const ebm::Dataset& ds, int64_t n) {
  ASSERT_EQ(ds.images.dim(), 4);
  EXPECT_EQ(ds.images.size(0), n);
  EXPECT_EQ(ds.images.size(1), 1);
  EXPECT_EQ(ds.images.size(2), 28);
  EXPECT_EQ(ds.images.size(3), 28);
  EXPECT_EQ(ds.images.scalar_type(), torch::kFloat32);
  EXPECT_GE(ds.images.min().item<float>(), 0.0f);
  EXPECT_LE(ds.images.max().item<float>(), 1.0f);
}

}  // namespace

// ---------------------------------------------------------------- stratified_holdout

static void StratifiedHoldout_ExactIndicesOnHandMadeLabels() {
  // Items are walked grouped by class (stable within a class) and every k-th
  // one overall is held out, so each class gets floor or ceil of n_c/k and
  // the total is exactly floor(N/k).
  {
    // class 0: {2,5,8,9}, class 1: {1,4,7}, class 2: {0,3,6}
    // walk order 2 5 8 9 1 4 7 0 3 6 -> positions 2,5,8 -> items 8,4,3.
    auto l = torch::tensor({2, 1, 0, 2, 1, 0, 2, 1, 0, 0}, torch::kInt64);
    EXPECT_EQ(to_vec(ebm::stratified_holdout(l, 3)), (std::vector<int64_t>{3, 4, 8}));
  }
  {
    // walk order 1 3 5 | 0 2 4 | 6 7 -> positions 1,3,5,7 -> items 3,0,4,7.
    auto l = torch::tensor({1, 0, 1, 0, 1, 0, 2, 2}, torch::kInt64);
    EXPECT_EQ(to_vec(ebm::stratified_holdout(l, 2)), (std::vector<int64_t>{0, 3, 4, 7}));
  }
  {
    auto l = torch::tensor({0, 0, 0, 0, 0, 1, 1, 1, 1, 1}, torch::kInt64);
    EXPECT_EQ(to_vec(ebm::stratified_holdout(l, 5)), (std::vector<int64_t>{4, 9}));
    EXPECT_EQ(to_vec(ebm::stratified_holdout(l, 1)), to_vec(torch::arange(10)));
    EXPECT_EQ(ebm::stratified_holdout(l, 11).numel(), 0);
  }
}

static void StratifiedHoldout_BalancedOnLargerSet() {
  auto gen = at::detail::createCPUGenerator(5);
  auto l = torch::randint(0, 7, {1003}, gen, torch::kInt64);
  auto idx = ebm::stratified_holdout(l, 4);
  EXPECT_EQ(idx.numel(), 1003 / 4);
  auto all = class_counts(l, 7), held = class_counts(l.index_select(0, idx), 7);
  for (int c = 0; c < 7; ++c) {
    EXPECT_GE(held[c], all[c] / 4) << "class " << c;
    EXPECT_LE(held[c], (all[c] + 3) / 4) << "class " << c;
  }
  // Sorted, unique, in range.
  auto v = to_vec(idx);
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
  EXPECT_EQ(std::set<int64_t>(v.begin(), v.end()).size(), v.size());
  EXPECT_GE(v.front(), 0);
  EXPECT_LT(v.back(), 1003);
  // Deterministic.
  EXPECT_TRUE(torch::equal(idx, ebm::stratified_holdout(l, 4)));
}

// ---------------------------------------------------------------- fashion-mnist

static void Datasets_FashionMnistTest() {
  REQUIRE_DATA("fashion-mnist/t10k-images-idx3-ubyte.gz");
  auto ds = ebm::load_dataset("fashion-mnist", opts("test"));
  EXPECT_EQ(ds.name, "fashion-mnist");
  EXPECT_EQ(ds.split, "test");
  expect_images(ds, 10000);
  ASSERT_TRUE(ds.labels.defined());
  EXPECT_EQ(ds.labels.scalar_type(), torch::kInt64);
  EXPECT_EQ(ds.labels.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_EQ(ds.num_classes, 10);
  EXPECT_EQ(class_counts(ds.labels, 10), std::vector<int64_t>(10, 1000));  // the published balance
  // Values really are k/255.
  auto scaled = ds.images.narrow(0, 0, 100) * 255;
  EXPECT_TRUE(torch::allclose(scaled, scaled.round(), 0, 1e-4));
  EXPECT_GT(ds.images.mean().item<float>(), 0.2f);  // not blank
  // n keeps the first n.
  auto first = ebm::load_dataset("fashion-mnist", opts("test", 7));
  EXPECT_EQ(first.size(), 7);
  EXPECT_TRUE(torch::equal(first.images, ds.images.narrow(0, 0, 7)));
  EXPECT_TRUE(torch::equal(first.labels, ds.labels.narrow(0, 0, 7)));
}

static void Datasets_FashionMnistTrainFitVal() {
  REQUIRE_DATA("fashion-mnist/train-images-idx3-ubyte.gz");
  auto train = ebm::load_dataset("fashion-mnist", opts("train"));
  expect_images(train, 60000);
  auto val = ebm::load_dataset("fashion-mnist", opts("val"));
  auto fit = ebm::load_dataset("fashion-mnist", opts("fit"));
  EXPECT_EQ(val.size(), 5000);  // 1 in 12
  EXPECT_EQ(fit.size() + val.size(), train.size());
  EXPECT_EQ(val.split, "val");
  EXPECT_EQ(fit.split, "fit");
  auto idx = ebm::stratified_holdout(train.labels, 12);
  EXPECT_TRUE(torch::equal(val.images, train.images.index_select(0, idx)));
  auto all = class_counts(train.labels, 10), held = class_counts(val.labels, 10);
  for (int c = 0; c < 10; ++c) EXPECT_NEAR(double(held[c]), all[c] / 12.0, 1.0) << "class " << c;
}

// ---------------------------------------------------------------- mnist

static void Datasets_MnistSplitSizesStratifiedDisjoint() {
  REQUIRE_DATA("mnist/images.idx");
  auto train = ebm::load_dataset("mnist", opts("train"));
  auto test = ebm::load_dataset("mnist", opts("test"));
  expect_images(train, 8000);
  expect_images(test, 2000);
  EXPECT_EQ(train.num_classes, 10);
  EXPECT_EQ(train.split, "train");
  EXPECT_EQ(test.split, "test");

  // Stratified: every class's test share is 1/5 of its total, within +-1.
  auto tr = class_counts(train.labels, 10), te = class_counts(test.labels, 10);
  for (int c = 0; c < 10; ++c) {
    const double total = double(tr[c] + te[c]);
    EXPECT_GT(total, 0);
    EXPECT_NEAR(double(te[c]), total / 5.0, 1.0) << "class " << c;
  }

  // Train and test partition the raw file: the multiset of (image, label)
  // pairs of train + test equals that of the file, so no row is in both.
  ebm::Dataset raw;
  raw.images = ebm::read_images(data_root() + "/mnist/images.idx");
  raw.labels = ebm::read_tensor(data_root() + "/mnist/labels.idx").to(torch::kInt64);
  ASSERT_EQ(raw.size(), 10000);
  auto a = pairs(train), b = pairs(test), r = pairs(raw);
  std::vector<std::pair<uint64_t, int64_t>> ab;
  std::merge(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(ab));
  EXPECT_EQ(ab, r);
  // And, where the file has no duplicate images, not one test image is in train.
  auto rh = row_hashes(raw.images);
  std::set<uint64_t> uniq(rh.begin(), rh.end());
  auto trh = row_hashes(train.images), teh = row_hashes(test.images);
  std::set<uint64_t> trs(trh.begin(), trh.end());
  int64_t shared = 0;
  for (auto h : teh) shared += trs.count(h);
  EXPECT_LE(shared, int64_t(rh.size() - uniq.size()));
  if (uniq.size() == rh.size()) {
    EXPECT_EQ(shared, 0);
  }

  // The split is a mix of classes from the start (the file is grouped by class).
  auto head = class_counts(train.labels.narrow(0, 0, 200), 10);
  for (int c = 0; c < 10; ++c) EXPECT_GT(head[c], 0) << "class " << c;

  // Deterministic: a second load gives the same rows in the same order.
  auto again = ebm::load_dataset("mnist", opts("test"));
  EXPECT_TRUE(torch::equal(again.images, test.images));
  EXPECT_TRUE(torch::equal(again.labels, test.labels));
}

static void Datasets_MnistFitValDisjointAndCoverTrain() {
  REQUIRE_DATA("mnist/images.idx");
  auto train = ebm::load_dataset("mnist", opts("train"));
  auto fit = ebm::load_dataset("mnist", opts("fit"));
  auto val = ebm::load_dataset("mnist", opts("val"));
  EXPECT_EQ(val.size(), 800);  // 1 in 10 of train
  EXPECT_EQ(fit.size(), 7200);
  EXPECT_EQ(fit.size() + val.size(), train.size());
  auto f = pairs(fit), v = pairs(val), t = pairs(train);
  std::vector<std::pair<uint64_t, int64_t>> fv;
  std::merge(f.begin(), f.end(), v.begin(), v.end(), std::back_inserter(fv));
  EXPECT_EQ(fv, t);
  // Disjoint as index sets: val rows are exactly the holdout indices of train.
  auto idx = ebm::stratified_holdout(train.labels, 10);
  EXPECT_TRUE(torch::equal(val.images, train.images.index_select(0, idx)));
  auto keep = torch::ones({train.size()}, torch::kBool);
  keep.index_fill_(0, idx, false);
  EXPECT_TRUE(torch::equal(fit.images, train.images.index_select(0, keep.nonzero().squeeze(1))));
  auto all = class_counts(train.labels, 10), held = class_counts(val.labels, 10);
  for (int c = 0; c < 10; ++c) EXPECT_NEAR(double(held[c]), all[c] / 10.0, 1.0) << "class " << c;

  EXPECT_THROW(ebm::load_dataset("mnist", opts("bogus")), ebm::UsageError);
}

// ---------------------------------------------------------------- synthetic

static void Datasets_SyntheticDeterministicBySeed() {
  for (const std::string name : {"gaussian", "uniform", "constant"}) {
    SCOPED_TRACE(name);
    ebm::DatasetOptions o;
    o.synthetic_n = 37;
    o.seed = 3;
    auto a = ebm::load_dataset(name, o);
    auto b = ebm::load_dataset(name, o);
    expect_images(a, 37);
    EXPECT_FALSE(a.labels.defined());
    EXPECT_EQ(a.num_classes, 0);
    EXPECT_EQ(a.name, name);
    EXPECT_TRUE(torch::equal(a.images, b.images));
    o.seed = 4;
    auto c = ebm::load_dataset(name, o);
    EXPECT_FALSE(torch::equal(a.images, c.images));
    o.synthetic_n = 5;
    EXPECT_EQ(ebm::load_dataset(name, o).size(), 5);
    o.synthetic_n = 37;
    o.n = 10;
    EXPECT_EQ(ebm::load_dataset(name, o).size(), 10);
  }
}

static void Datasets_SyntheticDistributions() {
  ebm::DatasetOptions o;
  o.synthetic_n = 500;
  o.seed = 1;
  // uniform: mean 1/2, variance 1/12 (392000 pixels: SE of the mean ~5e-4).
  auto u = ebm::load_dataset("uniform", o).images;
  EXPECT_NEAR(u.mean().item<double>(), 0.5, 0.005);
  EXPECT_NEAR(u.var().item<double>(), 1.0 / 12.0, 0.002);
  // gaussian: N(0.5, 0.25^2) clipped; clipping at 2 sigma barely moves the mean.
  auto g = ebm::load_dataset("gaussian", o).images;
  EXPECT_NEAR(g.mean().item<double>(), 0.5, 0.005);
  EXPECT_NEAR(g.std().item<double>(), 0.25, 0.02);
  // constant: every image is one value, and the values differ between images.
  auto c = ebm::load_dataset("constant", o).images.view({500, -1});
  EXPECT_TRUE(torch::equal(c.amax(1), c.amin(1)));
  EXPECT_GT(c.select(1, 0).std().item<double>(), 0.2);
}

static void Datasets_VflipAndInvert() {
  ebm::DatasetOptions o;
  o.synthetic_n = 6;
  o.seed = 9;
  auto base = ebm::load_dataset("uniform", o);
  auto flip = ebm::load_dataset("vflip:uniform", o);
  auto inv = ebm::load_dataset("invert:uniform", o);
  EXPECT_EQ(flip.name, "vflip:uniform");
  EXPECT_EQ(inv.name, "invert:uniform");
  ASSERT_EQ(flip.images.sizes(), base.images.sizes());
  // Upside down: row r of the flipped image is row H-1-r of the original.
  for (int64_t r = 0; r < 28; ++r)
    EXPECT_TRUE(torch::equal(flip.images.select(2, r), base.images.select(2, 27 - r))) << "row " << r;
  EXPECT_TRUE(torch::allclose(inv.images, 1.0 - base.images, 0, 0));
  // Nested: vflip of vflip is the identity.
  EXPECT_TRUE(torch::equal(ebm::load_dataset("vflip:vflip:uniform", o).images, base.images));
}

static void Datasets_VflipKeepsLabelsAndHonoursN() {
  REQUIRE_DATA("mnist/images.idx");
  auto base = ebm::load_dataset("mnist", opts("test"));
  auto flip = ebm::load_dataset("vflip:mnist", opts("test", 50));
  ASSERT_EQ(flip.size(), 50);
  EXPECT_TRUE(torch::equal(flip.images, base.images.narrow(0, 0, 50).flip({2})));
  ASSERT_TRUE(flip.labels.defined());
  EXPECT_TRUE(torch::equal(flip.labels, base.labels.narrow(0, 0, 50)));
  auto inv = ebm::load_dataset("invert:mnist", opts("test", 50));
  EXPECT_TRUE(torch::equal(inv.images, 1.0 - base.images.narrow(0, 0, 50)));
}

static void Datasets_FilePath() {
  auto dir = fs::temp_directory_path() / ("ebm_test_data_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string p = (dir / "imgs.npy").string();
  auto x = torch::rand({3, 1, 28, 28});
  ebm::write_tensor(p, x);
  ebm::DatasetOptions o;
  auto ds = ebm::load_dataset(p, o);
  EXPECT_TRUE(torch::equal(ds.images, x));
  EXPECT_FALSE(ds.labels.defined());
  o.n = 2;
  EXPECT_EQ(ebm::load_dataset(p, o).size(), 2);
  fs::remove_all(dir);
}

static void Datasets_UnknownNamesThrowUsageError() {
  ebm::DatasetOptions o;
  o.root = data_root();
  for (const std::string bad : {"nope", "cifar10", "vflip:nope", "invert:", "rot90:mnist",
                                "/no/such/file.npy", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_THROW(ebm::load_dataset(bad, o), ebm::UsageError);
  }
  try {
    ebm::load_dataset("nope", o);
  } catch (const ebm::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
  o.synthetic_n = 0;
  EXPECT_THROW(ebm::load_dataset("gaussian", o), ebm::UsageError);
}

static void Datasets_MissingDataDirIsDataError() {
  ebm::DatasetOptions o;
  o.root = "/no/such/ebm/data/dir";
  EXPECT_THROW(ebm::load_dataset("mnist", o), ebm::DataError);
  EXPECT_THROW(ebm::load_dataset("fashion-mnist", o), ebm::DataError);
}

// ---------------------------------------------------------------- test cases
// Each ctest entry is its own process and LibTorch takes ~0.7 s to load, so
// related checks share one TEST; SCOPED_TRACE names the check that failed.

TEST(StratifiedHoldout, ExactAndBalanced) {
  {
    SCOPED_TRACE("ExactIndicesOnHandMadeLabels");
    StratifiedHoldout_ExactIndicesOnHandMadeLabels();
  }
  {
    SCOPED_TRACE("BalancedOnLargerSet");
    StratifiedHoldout_BalancedOnLargerSet();
  }
}

TEST(Datasets, FashionMnist) {
  {
    SCOPED_TRACE("FashionMnistTest");
    Datasets_FashionMnistTest();
  }
  {
    SCOPED_TRACE("FashionMnistTrainFitVal");
    Datasets_FashionMnistTrainFitVal();
  }
}

TEST(Datasets, Mnist) {
  {
    SCOPED_TRACE("MnistSplitSizesStratifiedDisjoint");
    Datasets_MnistSplitSizesStratifiedDisjoint();
  }
  {
    SCOPED_TRACE("MnistFitValDisjointAndCoverTrain");
    Datasets_MnistFitValDisjointAndCoverTrain();
  }
  {
    SCOPED_TRACE("VflipKeepsLabelsAndHonoursN");
    Datasets_VflipKeepsLabelsAndHonoursN();
  }
}

TEST(Datasets, SyntheticVflipInvert) {
  {
    SCOPED_TRACE("SyntheticDeterministicBySeed");
    Datasets_SyntheticDeterministicBySeed();
  }
  {
    SCOPED_TRACE("SyntheticDistributions");
    Datasets_SyntheticDistributions();
  }
  {
    SCOPED_TRACE("VflipAndInvert");
    Datasets_VflipAndInvert();
  }
}

TEST(Datasets, FilesAndErrors) {
  {
    SCOPED_TRACE("FilePath");
    Datasets_FilePath();
  }
  {
    SCOPED_TRACE("UnknownNamesThrowUsageError");
    Datasets_UnknownNamesThrowUsageError();
  }
  {
    SCOPED_TRACE("MissingDataDirIsDataError");
    Datasets_MissingDataDirIsDataError();
  }
}
