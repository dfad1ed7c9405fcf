// quality.cpp: Fréchet distance of samples to real images with the same
// attributes, its real-vs-real reference, and kNN agreement. See quality.h.
#include "ebm/compose/quality.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "ebm/compose/morphology.h"
#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/metrics/frechet.h"

namespace ebm {

using json = nlohmann::json;

namespace {

const char* kThickness[] = {"thin", "medium", "thick"};

// Fix attribute `slot` to `v`; a second, different value contradicts.
void fix(int64_t& slot, int64_t v, bool& contradictory) {
  if (slot >= 0 && slot != v) contradictory = true;
  slot = v;
}

// The positive conjuncts of e: e itself, or the terms of a top-level AND,
// looking through weights (and through nested ANDs, which are conjuncts too).
void conjuncts(const Expr& e, std::vector<const Expr*>& out) {
  if (e.kind == Expr::Kind::Weight) return conjuncts(e.kids[0], out);
  if (e.kind == Expr::Kind::And) {
    for (const auto& k : e.kids) conjuncts(k, out);
    return;
  }
  if (e.kind == Expr::Kind::Atom) out.push_back(&e);
}

std::string fmt(double v, const char* f = "%.4g") {
  char b[32];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

}  // namespace

std::string RealAttributes::str(const std::string& label_name) const {
  if (contradictory) return "contradictory";
  std::string s;
  if (label >= 0) s = label_name + "=" + std::to_string(label);
  if (thickness >= 0) s += (s.empty() ? "" : " & ") + std::string("thickness=") + kThickness[thickness];
  return s.empty() ? "any" : s;
}

RealAttributes fixed_attributes(const Expr& e, const AttributeSet& attrs) {
  RealAttributes a;
  std::vector<const Expr*> atoms;
  conjuncts(e, atoms);
  for (const Expr* t : atoms) {
    if (t->atom.rfind("model:", 0) == 0) continue;
    const auto [mi, ci] = attrs.resolve(t->atom);
    const auto& name = attrs.models()[size_t(mi)].name;
    if (name == "digit") fix(a.label, ci, a.contradictory);
    if (name == "thickness") fix(a.thickness, ci, a.contradictory);
  }
  return a;
}

json QualityReport::to_json() const {
  json j = json::object();
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
  if (!frechet_real.is_null()) {
    j["frechet"] = opt(frechet);
    j["frechet_reference"] = opt(frechet_reference);
    j["frechet_ratio"] = opt(frechet_ratio);
    j["frechet_real"] = frechet_real;
  }
  if (!knn_judge.is_null()) {
    j["knn_agreement"] = opt(knn_agreement);
    j["knn_judge"] = knn_judge;
  }
  return j;
}

std::string QualityReport::to_text() const {
  std::string s;
  if (!frechet_real.is_null()) {
    if (frechet)
      s += "FD " + fmt(*frechet) + " (real-vs-real " + fmt(*frechet_reference) + ", ratio " + fmt(*frechet_ratio, "%.2f") +
           ", n " + std::to_string(frechet_real.value("n", int64_t{0})) + ", " + frechet_real.value("split", "") + ")";
    else
      s += "FD n/a (" + frechet_real.value("note", "") + ")";
  }
  if (knn_agreement) s += std::string(s.empty() ? "" : "  ") + "kNN agreement " + fmt(*knn_agreement, "%.3f");
  return s;
}

QualityJudge::QualityJudge(EnergyPtr judge, std::string judge_path, std::string data, QualityOptions o,
                           std::optional<std::pair<double, double>> thick_bounds, std::string root)
    : judge_(std::move(judge)),
      judge_path_(std::move(judge_path)),
      data_(std::move(data)),
      root_(std::move(root)),
      o_(std::move(o)),
      thick_(thick_bounds) {
  if (!judge_) throw UsageError("quality: no judge");
  for (const auto* sp : {&o_.real_split(), &o_.fallback_split()})
    if (*sp != "fit" && *sp != "val" && *sp != "train" && *sp != "test")
      throw UsageError("quality: split '" + *sp + "' of the real images is not fit, val, train or test");
  pools_.resize(o_.fallback_split() == o_.real_split() ? 1 : 2);
}

QualityJudge::QualityJudge(EnergyPtr judge, std::string judge_path, std::string data, QualityOptions o,
                           std::vector<RealPool> pools, std::optional<std::pair<double, double>> thick_bounds,
                           torch::Tensor knn_fit_images, torch::Tensor knn_fit_labels)
    : judge_(std::move(judge)),
      judge_path_(std::move(judge_path)),
      data_(std::move(data)),
      o_(std::move(o)),
      thick_(thick_bounds),
      given_pools_(true),
      knn_images_(std::move(knn_fit_images)),
      knn_labels_(std::move(knn_fit_labels)) {
  if (!judge_) throw UsageError("quality: no judge");
  if (pools.empty()) throw UsageError("quality: no real pools given");
  for (auto& p : pools) {
    if (!p.images.defined() || p.images.dim() != 4 || !p.labels.defined() || p.labels.dim() != 1 ||
        p.labels.size(0) != p.images.size(0))
      throw UsageError("quality: real pool '" + p.split + "' needs images [M,1,H,W] and labels [M]");
    pools_.emplace_back(Pool{std::move(p), {}});
  }
}

void QualityJudge::check(const QualityOptions& o, int64_t n_samples) {
  if (o.draws() < 1) throw UsageError("frechet-draws must be >= 1, got " + std::to_string(o.draws()));
  if (o.frechet_n() < 0 || o.frechet_n() > n_samples)
    throw UsageError("frechet-n must be 0 (all samples) or in [1, " + std::to_string(n_samples) + "], the number of samples; got " +
                     std::to_string(o.frechet_n()));
}

QualityJudge::Pool& QualityJudge::pool(size_t i) const {
  auto& p = pools_.at(i);
  if (!p) {
    DatasetOptions d;
    d.split = i == 0 ? o_.real_split() : o_.fallback_split();
    d.root = root_;
    Dataset ds = load_dataset(data_, d);
    if (!ds.labels.defined()) throw DataError("quality: dataset '" + data_ + "' has no labels to match attributes with");
    p = Pool{RealPool{d.split, ds.images, ds.labels}, {}};
  }
  return *p;
}

const KnnJudge* QualityJudge::knn() const {
  if (!knn_tried_) {
    knn_tried_ = true;
    if (!given_pools_ && data_ == "mnist") {
      DatasetOptions d;
      d.split = "fit";  // a training split only: never the test images it judges against
      d.root = root_;
      const Dataset fit = load_dataset("mnist", d);
      knn_ = std::make_unique<KnnJudge>(fit.images, fit.labels, o_.knn_judge());
    } else if (knn_images_.defined()) {
      knn_ = std::make_unique<KnnJudge>(knn_images_, knn_labels_, o_.knn_judge());
    }
  }
  return knn_.get();
}

QualityReport QualityJudge::measure(const torch::Tensor& x, const RealAttributes& a, uint64_t seed) const {
  if (!x.defined() || x.dim() != 4)
    throw UsageError("quality: samples must be [N,C,H,W], got " + (x.defined() ? std::to_string(x.dim()) + "-d" : "undefined"));
  const int64_t N = x.size(0);
  QualityReport r;
  const std::string label_name = data_ == "mnist" ? "digit" : "class";
  if (o_.frechet()) {
    check(o_, N);
    int64_t n = o_.frechet_n() > 0 ? o_.frechet_n() : N;
    json real{{"data", data_}, {"attributes", a.str(label_name)},
              {"space", judge_path_ + " penultimate features (judge_features)"}};
    if (a.thickness >= 0 && !thick_)
      throw UsageError("quality: thickness=" + std::string(kThickness[a.thickness]) + " is fixed but no tercile boundaries were given");
    if (a.contradictory) {
      real["note"] = "the expression fixes an attribute to two values; no real image has them";
    } else if (n < 2) {
      real["note"] = "needs n >= 2 samples for a covariance, got " + std::to_string(n);
    } else {
      // The real images with the attributes, per pool; the first pool with 2n wins.
      std::vector<torch::Tensor> match;
      json counts = json::object();
      size_t chosen = pools_.size();
      for (size_t i = 0; i < pools_.size(); ++i) {
        Pool& p = pool(i);
        auto keep = torch::ones({p.real.labels.size(0)}, torch::kBool);
        if (a.label >= 0) keep = keep.logical_and(p.real.labels.eq(a.label));
        if (a.thickness >= 0) {
          if (!p.thick_class.defined())
            p.thick_class = thickness_class(stroke_thickness(p.real.images), thick_->first, thick_->second);
          keep = keep.logical_and(p.thick_class.eq(a.thickness));
        }
        match.push_back(keep.nonzero().flatten());
        counts[p.real.split] = match.back().size(0);
        if (match.back().size(0) >= 2 * n) {
          chosen = i;
          break;
        }
      }
      std::string note;
      if (chosen == pools_.size()) {
        // No pool has 2n: the larger one (the first on ties), with n halved to fit.
        chosen = 0;
        for (size_t i = 1; i < match.size(); ++i)
          if (match[i].size(0) > match[chosen].size(0)) chosen = i;
        const int64_t n_fit = match[chosen].size(0) / 2;
        note = "no split has 2n = " + std::to_string(2 * n) + " real images with " + a.str(label_name) + " (" +
               counts.dump() + "); n reduced to " + std::to_string(n_fit) + ", samples included";
        n = n_fit;
      } else if (chosen > 0) {
        note = pool(0).real.split + " has " + std::to_string(match[0].size(0)) + " images with " + a.str(label_name) +
               ", fewer than 2n = " + std::to_string(2 * n) + "; the real sets come from " + pool(chosen).real.split;
      }
      real["split"] = pool(chosen).real.split;
      real["pool"] = match[chosen].size(0);
      real["pools"] = counts;
      real["n"] = n;
      if (!note.empty()) real["note"] = note;
      if (n >= 2) {
        const Pool& p = pool(chosen);
        auto gen = at::detail::createCPUGenerator(seed);
        const auto ss = gaussian_stats(judge_features(*judge_, x.narrow(0, 0, n)));
        double fd = 0, ref = 0, ref_lo = INFINITY, ref_hi = 0;
        for (int64_t d = 0; d < o_.draws(); ++d) {
          const auto perm = torch::randperm(match[chosen].size(0), gen, torch::kInt64);
          const auto ia = match[chosen].index_select(0, perm.narrow(0, 0, n));
          const auto ib = match[chosen].index_select(0, perm.narrow(0, n, n));
          const auto sa = gaussian_stats(judge_features(*judge_, p.real.images.index_select(0, ia)));
          const auto sb = gaussian_stats(judge_features(*judge_, p.real.images.index_select(0, ib)));
          const double rd = frechet_distance(sb, sa);
          fd += frechet_distance(ss, sa) / double(o_.draws());
          ref += rd / double(o_.draws());
          ref_lo = std::min(ref_lo, rd), ref_hi = std::max(ref_hi, rd);
        }
        r.frechet = fd;
        r.frechet_reference = ref;
        r.frechet_ratio = fd / ref;
        real["draws"] = o_.draws();
        real["reference_range"] = {ref_lo, ref_hi};
      } else {
        real["note"] = note + "; fewer than 4 real images, no Fréchet distance";
      }
    }
    r.frechet_real = real;
  }
  if (o_.knn() && a.label >= 0 && !a.contradictory) {
    if (const KnnJudge* k = knn()) {
      const auto pred = k->predict(x);
      r.knn_agreement = pred.eq(a.label).to(torch::kFloat64).mean().item<double>();
      r.knn_judge = {{"data", given_pools_ ? "given" : data_ + "/fit"}, {"k", k->options().k()},
                     {"deskew", k->options().deskew()}, {label_name, a.label}, {"n", N}};
    }
  }
  return r;
}

}  // namespace ebm
