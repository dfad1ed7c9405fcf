// quality.h: how close generated images are to real images with the same
// attributes, beside the judges' success rate ("How quality is
// measured"). One implementation, QualityJudge::measure, serves `ebm compose
// eval` (evaluate_composition) and `ebm sample --judge` (sample()).
//
// 1. Fréchet distance (FD, frechet.h) in the reporting judge's penultimate
//    features (judge_features: 96-d for models/mnist-judge and
//    models/fmnist-judge, width-24 conv-classifiers) between n samples and a
//    set A of n real images with the attributes the samples should have
//    (RealAttributes: the dataset's label for digit=d / a class, the thickness
//    rule of morphology.h, thickness_class with the thickness model's
//    terciles, for thin/medium/thick).
// 2. Its real-vs-real reference: FD(B, A), B another n real images with the
//    same attributes, disjoint from A, drawn from the same pool by the same
//    code path (gaussian_stats of judge_features, frechet_distance). The
//    ratio FD(samples, A) / FD(B, A) is about 1 for samples distributed like
//    the real images and grows as they move away. Both are means over
//    `draws` random pairs (A_r, B_r) (default 10): the judge's features are
//    dominated by a few directions, so a single FD of n = 100 images varies
//    by a factor of ~3 between draws of the real sets. The samples are one
//    draw all the same: real images fed as samples give single ratios from
//    ~0.6 to ~2.2 (tests/test_quality.cpp), so a ratio of one cell at
//    n = 100 is only a coarse figure; compare medians over cells.
//
//    Why the reference and the ratio: FD estimated from n images is biased
//    upward, by roughly tr(C_a)/n + tr(C_b)/n plus the error of the
//    square-root term, and with n = 100 images in 96 dimensions the covariances
//    are rank-deficient, so the bias is of the same order as the distance
//    itself. Two real sets of n images are therefore far from FD 0. The
//    reference has the same n, the same feature space and the same pool as the
//    samples' figure, so it carries the same bias; the ratio compares like with
//    like, and FDs at different n must not be compared with each other.
//
//    Which real images: the first split, of `real_split` (default test) and then `fallback_split`
//    (default "fit", the trainers' split), that holds at least 2n images with
//    the attributes; A and B are disjoint random n-subsets of them (seeded).
//    The MNIST test split has ~200 images per digit and only ~70 thin or thick
//    images of a digit, so digit & thickness cells at n = 100 use fit; the
//    report names the split ("frechet_real"."split") and why. The judges were
//    trained on fit, so fit images might sit differently in their feature
//    space than unseen ones; measured, real test images against fit-split
//    sets give ratios with medians 0.90 to 1.10 (20 draws each of digit=3 at
//    n = 100, thin 3s and thick 7s at n = 60, any digit at n = 100), inside
//    the spread of test against test, so at these n the shift is below the
//    noise. When no split has 2n, n is reduced to half the larger pool,
//    samples included, and the report says so.
//
// 3. Second-judge agreement: the share of samples that KnnJudge (knn_judge.h;
//    a pixel kNN with deskew, fitted on the MNIST fit split, its defaults)
//    reads as the intended digit. Only for MNIST and only when the attributes
//    fix a digit; otherwise omitted.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ebm/compose/attributes.h"
#include "ebm/core/energy.h"
#include "ebm/metrics/knn_judge.h"

namespace ebm {

/// The attributes a set of samples should have, as real images carry them.
struct RealAttributes {
  /// The dataset label (digit for mnist, class for fashion-mnist); -1 = any.
  int64_t label = -1;
  /// 0 thin, 1 medium, 2 thick (thickness_class); -1 = any.
  int64_t thickness = -1;
  /// The expression fixes one attribute to two values (digit=3 & digit=5):
  /// no real image has them.
  bool contradictory = false;
  /// "digit=3 & thickness=thin", "class=4", "any", "contradictory"; digit
  /// labels are named "digit", other datasets' "class" (label_name).
  std::string str(const std::string& label_name = "digit") const;
};

/// The attributes `e` fixes: those of a positive atom that is the whole
/// expression or a term of its top-level AND, through weights ("2*digit=3",
/// "digit=3 & (thin)"). Atoms under OR or NOT fix nothing (`digit=7 & !thick`
/// fixes the digit only; `digit=3 | digit=8` fixes nothing), nor do attributes
/// other than digit and thickness or model: atoms.
RealAttributes fixed_attributes(const Expr& e, const AttributeSet& attrs);

struct QualityOptions {
  /// Fréchet distance in the judge's penultimate features, with its
  /// real-vs-real reference (see the top of this file).
  TORCH_ARG(bool, frechet) = true;
  /// Samples the Fréchet distance uses (the first frechet_n; each real set has
  /// as many); 0 = all samples. Must not exceed the number of samples.
  TORCH_ARG(int64_t, frechet_n) = 0;
  /// Pairs (A_r, B_r) of real sets drawn (each pair disjoint); frechet and
  /// frechet_reference are means over them. With one pair, real images fed as
  /// samples gave ratios from 0.25 to 3.7 (40 draws, n = 60..300); with ten,
  /// 0.6 to 2.6, about what the samples' own draw leaves.
  TORCH_ARG(int64_t, draws) = 10;
  /// The split the real sets come from first: "test" for reported figures;
  /// "fit" (or "val") when the figure chooses a setting, so that no choice
  /// sees the test images (fit, val, train or test).
  TORCH_ARG(std::string, real_split) = "test";
  /// Where the real sets come from when real_split has fewer than 2n
  /// images with the attributes ("fit": what the generators and judges were
  /// trained on; "val" is too small for n = 100 per digit). Unused when it
  /// equals real_split.
  TORCH_ARG(std::string, fallback_split) = "fit";
  /// kNN agreement with the intended digit (MNIST, a fixed digit only).
  TORCH_ARG(bool, knn) = true;
  /// The kNN judge's settings (fitted on mnist/fit; knn_judge.h's defaults were
  /// chosen on mnist/val).
  TORCH_ARG(KnnJudgeOptions, knn_judge) = {};
};

/// A pool of real images to draw the reference sets from.
struct RealPool {
  std::string split;     ///< its name in the report, e.g. "test"
  torch::Tensor images;  ///< [M,1,H,W] float32 in [0,1]
  torch::Tensor labels;  ///< [M] int64
};

/// The Fréchet figures of one measurement; nullopt where not measured.
struct QualityReport {
  std::optional<double> frechet;            ///< FD(samples, A)
  std::optional<double> frechet_reference;  ///< FD(B, A)
  std::optional<double> frechet_ratio;      ///< frechet / frechet_reference
  std::optional<double> knn_agreement;      ///< share the kNN judge reads as the intended digit
  /// {"n","data","split","attributes","pool","space",["note"]}: how the real
  /// sets were chosen (null without --frechet).
  nlohmann::json frechet_real;
  /// {"data","k","deskew","digit","n"} (null when no digit is fixed).
  nlohmann::json knn_judge;
  /// "frechet","frechet_reference","frechet_ratio","frechet_real" when Fréchet
  /// is on (figures null when it could not be measured, with frechet_real.note
  /// saying why), "knn_agreement","knn_judge" when a digit is fixed.
  nlohmann::json to_json() const;
  /// "FD 12.3 (real-vs-real 4.56, ratio 2.70, n 100, fit)  kNN agreement 0.450"; "" when empty.
  std::string to_text() const;
};

/// Measures samples against real images (see the top of this file). Holds the
/// judge, the real pools (loaded on first use) and the kNN judge (fitted on
/// first use), so one instance serves every expression of an evaluation.
class QualityJudge {
 public:
  /// `judge`: the reporting classifier (features() must be defined);
  /// `judge_path` names it in the report. `data`: the dataset the samples
  /// imitate ("mnist", "fashion-mnist"). thick_lo/hi: the thickness terciles
  /// (Judges::thick_lo/hi), needed only when a measurement fixes a thickness.
  /// `root`: data directory ("" = data_dir()). Nothing is loaded yet.
  QualityJudge(EnergyPtr judge, std::string judge_path, std::string data, QualityOptions o,
               std::optional<std::pair<double, double>> thick_bounds = std::nullopt, std::string root = "");
  /// As above, with the real pools given (in order of preference, instead of
  /// data's test and fallback_split), e.g. for tests. `knn_fit`: the kNN
  /// judge's training images and labels (undefined = no kNN judge).
  QualityJudge(EnergyPtr judge, std::string judge_path, std::string data, QualityOptions o,
               std::vector<RealPool> pools, std::optional<std::pair<double, double>> thick_bounds,
               torch::Tensor knn_fit_images = {}, torch::Tensor knn_fit_labels = {});

  /// Samples x [N,1,H,W] in [0,1] that should have attributes `a`; `seed`
  /// picks the real sets. UsageError when frechet_n > N (naming both) or a
  /// thickness is fixed without thick_bounds.
  QualityReport measure(const torch::Tensor& x, const RealAttributes& a, uint64_t seed) const;

  const QualityOptions& options() const { return o_; }
  /// UsageError unless frechet_n is 0 or in [1, n_samples]: called before sampling.
  static void check(const QualityOptions& o, int64_t n_samples);

 private:
  struct Pool {
    RealPool real;
    torch::Tensor thick_class;  // [M] int64, computed on first use
  };
  Pool& pool(size_t i) const;
  const KnnJudge* knn() const;

  EnergyPtr judge_;
  std::string judge_path_, data_, root_;
  QualityOptions o_;
  std::optional<std::pair<double, double>> thick_;
  bool given_pools_ = false;
  mutable std::vector<std::optional<Pool>> pools_;  // [test, fallback] unless given
  mutable std::unique_ptr<KnnJudge> knn_;
  mutable bool knn_tried_ = false;
  torch::Tensor knn_images_, knn_labels_;
};

}  // namespace ebm
