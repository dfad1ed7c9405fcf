// scores.cpp: the OOD scores (energy, msp, maxlogit, grad-norm, energy-complexity,
// combined) and the card defaults that pick one. See ood.h.
#include "ebm/ood/ood.h"

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/io/plot.h"
#include "ebm/io/progress.h"
#include "format.h"

namespace ebm {

// ================================================================ scores

const std::vector<std::string>& score_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n{"energy", "msp", "maxlogit", "grad-norm", "energy-complexity", "combined"};
    for (const auto& p : posthoc_names()) n.push_back(p);
    return n;
  }();
  return names;
}

namespace {
bool has_head(const Energy& e) { return e.num_classes() > 0 && e.linear_head().first.defined(); }
const char* kScoreList = "energy, msp, maxlogit, grad-norm, energy-complexity, combined, odin, mahalanobis, knn, vim, react or all";
}  // namespace

std::vector<std::string> scores_for(const Energy& e) {
  if (has_head(e)) return score_names();
  if (e.num_classes() > 0) return {"energy", "msp", "maxlogit", "grad-norm", "energy-complexity", "combined", "odin"};
  return {"energy", "grad-norm", "energy-complexity", "combined"};
}

std::string canonical_score(const std::string& score) { return score == "free-energy" ? "energy" : score; }

void check_score(const std::string& score, const Energy& e) {
  const auto& all = score_names();
  if (score != "free-energy" && std::find(all.begin(), all.end(), score) == all.end())
    throw UsageError("unknown OOD score '" + score + "' (use " + kScoreList + ")");
  if ((score == "msp" || score == "maxlogit" || score == "free-energy" || is_posthoc(score)) && e.num_classes() <= 0)
    throw UsageError("score '" + score + "' needs a classifier (logits), but " + e.describe() +
                     " is an energy model; use energy or grad-norm");
  if (is_posthoc(score) && score != "odin" && !has_head(e))
    throw UsageError("score '" + score + "' needs penultimate features and a linear head, which " + e.describe() +
                     " does not expose (built-in conv-classifier models do)");
}

std::vector<std::string> parse_scores(const std::string& spec, const Energy& e) {
  if (spec == "all") return scores_for(e);
  std::vector<std::string> out;
  std::stringstream ss(spec);
  std::string s;
  while (std::getline(ss, s, ',')) {
    if (s.empty()) continue;
    check_score(s, e);
    s = canonical_score(s);
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  if (out.empty())
    throw UsageError(std::string("no OOD score given (use ") + kScoreList + ")");
  return out;
}

namespace {

// The classifier free energy at temperature T, as an Energy (for grad-norm).
class TemperedFreeEnergy : public Energy {
 public:
  TemperedFreeEnergy(Energy& base, double t) : base_(base), t_(t) {}
  torch::Tensor energy(const torch::Tensor& x) override { return free_energy(base_.logits(x), t_); }
  std::string describe() const override { return base_.describe(); }

 private:
  Energy& base_;
  double t_;
};

void check_finite(const torch::Tensor& s, const std::string& name) {
  auto bad = torch::logical_not(torch::isfinite(s));
  const int64_t nbad = bad.sum().item<int64_t>();
  if (nbad > 0) {
    const int64_t first = bad.nonzero()[0][0].item<int64_t>();
    throw DivergenceError("score '" + name + "' is NaN/Inf for " + std::to_string(nbad) + " of " +
                          std::to_string(s.size(0)) + " images (first: #" + std::to_string(first) + ")");
  }
}

}  // namespace

const torch::Tensor& ScoreSet::at(const std::string& name) const {
  for (const auto& [n, t] : scores)
    if (n == name) return t;
  TORCH_INTERNAL_ASSERT(false, "score '", name, "' was not computed");
  return scores.front().second;
}

torch::Tensor png_complexity_nats(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "png_complexity_nats: x must be [N,C,H,W], got ", x.sizes());
  auto u8 = x.select(1, 0).mul(255).round().clamp(0, 255).to(torch::kUInt8);
  auto out = torch::empty({x.size(0)}, torch::kFloat64);
  for (int64_t i = 0; i < x.size(0); ++i) out[i] = double(encode_png(u8[i]).size()) * 8.0 * std::log(2.0);
  return out;
}

ScoreSet compute_scores(Energy& e, const torch::Tensor& x, const std::vector<std::string>& scores,
                        const ScoreOptions& o, const std::function<void(int64_t)>& on_images) {
  if (!(o.temperature() > 0)) throw UsageError("temperature must be > 0, got " + std::to_string(o.temperature()));
  if (o.batch() < 1) throw UsageError("batch must be >= 1, got " + std::to_string(o.batch()));
  TORCH_CHECK(x.dim() == 4, "compute_scores: x must be [N,C,H,W], got ", x.sizes());
  std::vector<std::string> canon;
  for (const auto& s : scores) {
    check_score(s, e);
    canon.push_back(canonical_score(s));
  }
  auto want = [&](const char* s) { return std::find(canon.begin(), canon.end(), s) != canon.end(); };
  const bool clf = e.num_classes() > 0;
  const bool combined = want("combined");
  if (combined && !o.combined().fitted)
    throw UsageError("score 'combined' needs its standardisation fitted on in-distribution validation data "
                     "(fit_combined_stats); `ood eval` and `ood calibrate` do this themselves");
  const bool complexity = want("energy-complexity") || combined;
  const bool need_plain = !clf && (want("energy") || complexity);
  const CombinedStats& z = o.combined();
  // energy-complexity, gated by the largest validation energy (see ood.h)
  auto combine = [&](const torch::Tensor& en, const torch::Tensor& ec) {
    return torch::where(en > z.energy_max, CombinedStats::kGate + (en - z.energy_mean) / z.energy_sd,
                        (ec - z.complexity_mean) / z.complexity_sd);
  };
  const bool need_grad = want("grad-norm");
  for (const auto& s : canon)
    if (is_posthoc(s) && !(o.posthoc() && o.posthoc()->fitted))
      throw UsageError("score '" + s + "' needs its post-hoc detector fitted first (fit_posthoc); `ood eval` does this itself");
  const double T = o.temperature();
  const int64_t N = x.size(0);

  std::map<std::string, std::vector<torch::Tensor>> parts;
  std::vector<torch::Tensor> preds;
  TemperedFreeEnergy tempered(e, T);
  Energy& grad_energy = clf ? static_cast<Energy&>(tempered) : e;
  for (int64_t i = 0; i < N; i += o.batch()) {
    const auto xb = x.narrow(0, i, std::min(o.batch(), N - i));
    if (clf) {
      torch::NoGradGuard ng;
      // float64 logits: msp near 1 and large free energies keep their resolution.
      const auto L = e.logits(xb).to(torch::kFloat64);
      TORCH_CHECK(L.dim() == 2 && L.size(0) == xb.size(0), "logits must be [B,K], got ", L.sizes());
      const auto fe = free_energy(L, T);
      if (want("energy")) parts["energy"].push_back(fe);
      if (complexity) {
        const auto ec = fe - png_complexity_nats(xb);
        parts["energy-complexity"].push_back(ec);
        if (combined) parts["combined"].push_back(combine(fe, ec));
      }
      if (want("msp")) parts["msp"].push_back(-std::get<0>(torch::softmax(L, 1).max(1)));
      if (want("maxlogit")) parts["maxlogit"].push_back(-std::get<0>(L.max(1)));
      preds.push_back(L.argmax(1));
    } else if (need_plain) {
      torch::NoGradGuard ng;
      const auto en = e.energy(xb).to(torch::kFloat64);
      if (want("energy")) parts["energy"].push_back(en);
      if (complexity) {
        const auto ec = en - png_complexity_nats(xb);
        parts["energy-complexity"].push_back(ec);
        if (combined) parts["combined"].push_back(combine(en, ec));
      }
    }
    if (need_grad) {
      const auto g = energy_grad(grad_energy, xb);
      parts["grad-norm"].push_back(g.flatten(1).to(torch::kFloat64).norm(2, 1));
    }
    if (on_images) on_images(xb.size(0));
  }
  // The post-hoc scores run their own batched passes (one feature pass, or ODIN's input gradient).
  std::vector<std::string> posthoc;
  for (const auto& s : canon)
    if (is_posthoc(s) && std::find(posthoc.begin(), posthoc.end(), s) == posthoc.end()) posthoc.push_back(s);
  if (!posthoc.empty()) {
    const auto t = o.posthoc()->scores(e, posthoc, x, o.batch());
    for (size_t i = 0; i < posthoc.size(); ++i) parts[posthoc[i]].push_back(t[i]);
  }
  ScoreSet out;
  for (const auto& s : scores) {
    const auto& p = parts[canonical_score(s)];
    auto t = p.empty() ? torch::empty({0}, torch::kFloat64) : torch::cat(p);
    check_finite(t, s);
    out.scores.emplace_back(s, t);
  }
  if (clf) out.predictions = preds.empty() ? torch::empty({0}, torch::kInt64) : torch::cat(preds);
  return out;
}

json CombinedStats::to_json() const {
  return {{"energy", {{"mean", energy_mean}, {"sd", energy_sd}, {"max", energy_max}}},
          {"energy-complexity", {{"mean", complexity_mean}, {"sd", complexity_sd}}},
          {"fitted_on", fitted_on},
          {"rule", "combined = energy > energy.max ? 1e6 + (energy - energy.mean)/energy.sd "
                   ": (energy-complexity - energy-complexity.mean)/energy-complexity.sd"}};
}

CombinedStats CombinedStats::from_json(const json& j, const std::string& source) {
  auto bad = [&](const std::string& why) { return DataError(source + ": combined-score statistics: " + why); };
  CombinedStats z;
  auto read = [&](const char* key, double& mean, double& sd) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_object()) throw bad(std::string("missing \"") + key + "\"");
    const auto& k = j[key];
    if (!k.contains("mean") || !k["mean"].is_number() || !k.contains("sd") || !k["sd"].is_number())
      throw bad(std::string("\"") + key + "\" needs numeric \"mean\" and \"sd\"");
    mean = k["mean"];
    sd = k["sd"];
    if (!std::isfinite(mean) || !(sd > 0) || !std::isfinite(sd))
      throw bad(std::string("\"") + key + "\" has mean " + k["mean"].dump() + ", sd " + k["sd"].dump() +
                " (sd must be finite and > 0)");
  };
  read("energy", z.energy_mean, z.energy_sd);
  if (!j["energy"].contains("max") || !j["energy"]["max"].is_number()) throw bad("\"energy\" needs a numeric \"max\"");
  z.energy_max = j["energy"]["max"];
  read("energy-complexity", z.complexity_mean, z.complexity_sd);
  z.fitted_on = j.value("fitted_on", "");
  z.fitted = true;
  return z;
}

CombinedStats fit_combined_stats(Energy& e, const torch::Tensor& x_val, const ScoreOptions& o) {
  if (x_val.dim() != 4 || x_val.size(0) < 2)
    throw UsageError("fitting the combined score needs >= 2 validation images [N,C,H,W], got " +
                     std::to_string(x_val.dim() == 4 ? x_val.size(0) : 0));
  const auto s = compute_scores(e, x_val, {"energy", "energy-complexity"}, o);
  CombinedStats z;
  auto stats = [](const torch::Tensor& t, double& mean, double& sd) {
    mean = t.mean().item<double>();
    sd = t.std().item<double>();
    if (!(sd > 0)) throw DataError("the validation scores are constant; the combined score cannot be standardised");
  };
  stats(s.at("energy"), z.energy_mean, z.energy_sd);
  z.energy_max = s.at("energy").max().item<double>();
  stats(s.at("energy-complexity"), z.complexity_mean, z.complexity_sd);
  z.fitted = true;
  return z;
}

CombinedStats fit_combined_stats(Energy& e, const std::string& in, const std::string& split, int64_t n,
                                 const ScoreOptions& o, const std::string& root) {
  if (split == "test") throw UsageError("fitting the combined score on the test split would leak into evaluation");
  DatasetOptions d;
  d.split = split;
  d.n = n;
  d.root = root;
  const Dataset val = load_dataset(in, d);
  CombinedStats z = fit_combined_stats(e, val.images, o);
  z.fitted_on = in + "/" + val.split + " (" + std::to_string(val.size()) + " images)";
  return z;
}

torch::Tensor ood_score(Energy& e, const torch::Tensor& x, const std::string& score, const ScoreOptions& o) {
  return compute_scores(e, x, {score}, o).at(score);
}

std::string card_default_score(const std::string& model) {
  const json card = load_card(model);
  const auto it = card.find("default_score");
  if (it == card.end()) return "energy";
  if (!it->is_string()) throw DataError("model card of '" + model + "': \"default_score\" must be a string");
  return it->get<std::string>();
}

double card_temperature(const std::string& model, double given) {
  if (!std::isnan(given)) return given;
  const json card = load_card(model);
  return card.contains("temperature") && card["temperature"].is_number() ? card["temperature"].get<double>()
                                                                         : ScoreOptions().temperature();
}

}  // namespace ebm
