#include "ebm/io/data.h"

#include <torch/torch.h>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/image_io.h"

namespace ebm {
namespace {

std::string need(const std::string& path) {
  if (!is_file(path))
    throw DataError("dataset file '" + path + "' is missing; run `make setup` (or scripts/setup), "
                    "or set EBM_DATA to the folder that holds the data");
  return path;
}

torch::Tensor as_labels(const torch::Tensor& t, const std::string& path) {
  if (t.dim() != 1) throw DataError("'" + path + "': labels must be rank 1");
  return t.to(torch::kInt64);
}

// Pick the rows of a split from a (train, test) pair of labelled tensors.
Dataset split_labelled(Dataset full_train, Dataset full_test, const std::string& split, int64_t every_k) {
  if (split == "test") return full_test;
  if (split == "train") return full_train;
  if (split != "fit" && split != "val")
    throw UsageError("unknown split '" + split + "' (use train, fit, val or test)");
  auto val_idx = stratified_holdout(full_train.labels, every_k);
  torch::Tensor idx;
  if (split == "val") {
    idx = val_idx;
  } else {
    auto keep = torch::ones({full_train.size()}, torch::kBool);
    keep.index_fill_(0, val_idx, false);
    idx = keep.nonzero().squeeze(1);
  }
  full_train.images = full_train.images.index_select(0, idx);
  full_train.labels = full_train.labels.index_select(0, idx);
  full_train.split = split;
  return full_train;
}

Dataset load_fashion(const std::string& root, const std::string& split, const ReadOptions& ro) {
  const std::string d = root + "/fashion-mnist/";
  auto load = [&](const std::string& prefix, const std::string& sp) {
    Dataset ds;
    ds.name = "fashion-mnist";
    ds.split = sp;
    ds.images = read_images(need(d + prefix + "-images-idx3-ubyte.gz"), ro);
    std::string lp = need(d + prefix + "-labels-idx1-ubyte.gz");
    ds.labels = as_labels(read_tensor(lp, ro), lp);
    ds.num_classes = 10;
    if (ds.labels.size(0) != ds.images.size(0))
      throw DataError("'" + lp + "': " + std::to_string(ds.labels.size(0)) + " labels for " +
                      std::to_string(ds.images.size(0)) + " images");
    return ds;
  };
  if (split == "test") return load("t10k", "test");
  return split_labelled(load("train", "train"), Dataset{}, split, 12);
}

// The evaluation-only sets (ood_sources.h, built by `ebm data fetch`): val and
// test splits from disjoint sources, and no training split, so no trainer can
// take outliers from them. The validation set glyphs has a val split only.
Dataset load_evaluation_set(const std::string& name, const std::string& root, const std::string& split,
                            const ReadOptions& ro) {
  if (name == "glyphs" && split != "val")
    throw UsageError("glyphs is a validation set (choices are made on it, docs/ood.md) with a val split only, not '" +
                     split + "'; it is never a test OOD set");
  if (split != "val" && split != "test")
    throw UsageError(name + " is an evaluation-only set with splits val and test (disjoint sources), not '" + split + "'");
  const std::string d = root + "/" + name + "/";
  Dataset ds;
  ds.name = name;
  ds.split = split;
  ds.images = read_images(need(d + split + "-images.idx"), ro);
  if (name != "letters") return ds;  // icons and photos have sources, not classes
  ds.labels = as_labels(read_tensor(need(d + split + "-labels.idx"), ro), d + split + "-labels.idx");
  ds.num_classes = 10;  // A..J
  if (ds.labels.size(0) != ds.images.size(0)) throw DataError("'" + d + split + "-labels.idx': count differs from images");
  return ds;
}

Dataset load_mnist(const std::string& root, const std::string& split, const ReadOptions& ro) {
  const std::string d = root + "/mnist/";
  Dataset all;
  all.name = "mnist";
  all.images = read_images(need(d + "images.idx"), ro);
  all.labels = as_labels(read_tensor(need(d + "labels.idx"), ro), d + "labels.idx");
  all.num_classes = 10;
  if (all.labels.size(0) != all.images.size(0)) throw DataError("'" + d + "labels.idx': count differs from images");
  // The package stores digits grouped by class; a fixed shuffle makes every
  // split (and every "first n" subset of it) a mix of classes.
  auto perm = torch::randperm(all.size(), at::detail::createCPUGenerator(20200523), torch::kInt64);
  all.images = all.images.index_select(0, perm);
  all.labels = all.labels.index_select(0, perm);
  // 8,000 train / 2,000 test, stratified: every 5th digit of each class is test.
  auto test_idx = stratified_holdout(all.labels, 5);
  auto keep = torch::ones({all.size()}, torch::kBool);
  keep.index_fill_(0, test_idx, false);
  auto train_idx = keep.nonzero().squeeze(1);
  Dataset train = all, test = all;
  train.images = all.images.index_select(0, train_idx);
  train.labels = all.labels.index_select(0, train_idx);
  train.split = "train";
  test.images = all.images.index_select(0, test_idx);
  test.labels = all.labels.index_select(0, test_idx);
  test.split = "test";
  return split_labelled(train, test, split, 10);
}

}  // namespace

torch::Tensor stratified_holdout(const torch::Tensor& labels, int64_t every_k) {
  TORCH_CHECK(labels.dim() == 1, "labels must be [N]");
  // Walk items grouped by class (stable order within a class) and take every
  // k-th one overall: each class gets floor or ceil of n_c/k, and the total is
  // exactly floor(N/k).
  auto order = std::get<1>(labels.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  auto pick = torch::arange(every_k - 1, labels.size(0), every_k, torch::kInt64);
  return std::get<0>(order.index_select(0, pick).sort());
}

Dataset load_dataset(const std::string& name, const DatasetOptions& opts) {
  const std::string root = opts.root.empty() ? data_dir() : opts.root;
  ReadOptions ro;
  ro.allow_nan = opts.allow_nan;
  Dataset ds;
  auto synth = [&](const std::string& kind) {
    auto gen = at::detail::createCPUGenerator(opts.seed);
    const int64_t n = opts.synthetic_n;
    if (n <= 0) throw UsageError("synthetic dataset size must be positive, got " + std::to_string(n));
    Dataset s;
    s.name = kind;
    s.split = opts.split;
    if (kind == "gaussian") s.images = (torch::randn({n, 1, 28, 28}, gen) * 0.25 + 0.5).clamp(0, 1);
    else if (kind == "uniform") s.images = torch::rand({n, 1, 28, 28}, gen);
    else s.images = torch::rand({n, 1, 1, 1}, gen).expand({n, 1, 28, 28}).contiguous();
    return s;
  };
  auto colon = name.find(':');
  if (name == "fashion-mnist") {
    ds = load_fashion(root, opts.split, ro);
  } else if (name == "mnist") {
    ds = load_mnist(root, opts.split, ro);
  } else if (name == "letters" || name == "icons" || name == "photos" || name == "glyphs") {
    ds = load_evaluation_set(name, root, opts.split, ro);
  } else if (name == "gaussian" || name == "uniform" || name == "constant") {
    ds = synth(name);
  } else if (colon != std::string::npos && (name.compare(0, colon, "vflip") == 0 || name.compare(0, colon, "invert") == 0)) {
    DatasetOptions inner = opts;
    inner.n = -1;
    ds = load_dataset(name.substr(colon + 1), inner);
    ds.images = name[0] == 'v' ? ds.images.flip({2}).contiguous() : (1.0 - ds.images);
    ds.name = name;
  } else if (is_file(name)) {
    ds.name = name;
    ds.split = "file";
    ds.images = read_images(name, ro);
  } else {
    throw UsageError("unknown dataset '" + name + "'. " + dataset_help());
  }
  if (opts.n >= 0 && opts.n < ds.size()) {
    ds.images = ds.images.narrow(0, 0, opts.n);
    if (ds.labels.defined()) ds.labels = ds.labels.narrow(0, 0, opts.n);
  }
  return ds;
}

std::string dataset_help() {
  return "Datasets: fashion-mnist, mnist, letters, icons, photos (val/test only), glyphs (val only), gaussian, uniform, constant, vflip:<name>, "
         "invert:<name>, or a path to an .idx/.idx.gz/.npy/.png file";
}

const std::string& check_eval_split(const std::string& split) {
  if (split != "test" && split != "val")
    throw UsageError("--split must be test or val (never a training split), got '" + split + "'");
  return split;
}

Dataset export_images(const ExportOptions& o) {
  if (o.n <= 0) throw UsageError("export: n must be > 0, got " + std::to_string(o.n));
  if (!(o.noise >= 0)) throw UsageError("export: noise must be >= 0, got " + std::to_string(o.noise));
  DatasetOptions d;
  d.split = o.split;
  d.n = o.n;
  d.seed = o.seed;
  Dataset ds = load_dataset(o.data, d);
  if (o.noise > 0) {
    auto gen = at::detail::createCPUGenerator(o.seed);
    ds.images = (ds.images + o.noise * torch::randn(ds.images.sizes(), gen)).clamp(0, 1);
  }
  return ds;
}

}  // namespace ebm
