// ood.cpp: OOD scores, evaluation reports (JSON, tables, plots) and the
// calibrated detector. See ood.h for the definitions.
#include "ebm/ood/ood.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/io/plot.h"
#include "ebm/core/models.h"
#include "ebm/io/progress.h"

namespace ebm {

// ================================================================ scores

const std::vector<std::string>& score_names() {
  static const std::vector<std::string> names{"energy", "msp", "maxlogit", "grad-norm", "energy-complexity",
                                              "combined"};
  return names;
}

std::vector<std::string> scores_for(const Energy& e) {
  if (e.num_classes() > 0) return score_names();
  return {"energy", "grad-norm", "energy-complexity", "combined"};
}

std::string canonical_score(const std::string& score) { return score == "free-energy" ? "energy" : score; }

void check_score(const std::string& score, const Energy& e) {
  const auto& all = score_names();
  if (score != "free-energy" && std::find(all.begin(), all.end(), score) == all.end())
    throw UsageError("unknown OOD score '" + score + "' (use energy, msp, maxlogit, grad-norm, energy-complexity, combined or all)");
  if ((score == "msp" || score == "maxlogit" || score == "free-energy") && e.num_classes() <= 0)
    throw UsageError("score '" + score + "' needs a classifier (logits), but " + e.describe() +
                     " is an energy model; use energy or grad-norm");
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
    throw UsageError("no OOD score given (use energy, msp, maxlogit, grad-norm, energy-complexity, combined or all)");
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

// ================================================================ evaluation

std::vector<OodReport> evaluate_ood(Energy& e, const OodEvalOptions& o) {
  if (o.ood().empty()) throw UsageError("no OOD dataset given (--ood A,B,...)");
  if (o.scores().empty()) throw UsageError("no OOD score given");
  if (o.n_in() == 0 || o.n_in() < -1) throw UsageError("n_in must be positive or -1 (all), got " + std::to_string(o.n_in()));
  if (o.n_ood() == 0 || o.n_ood() < -1) throw UsageError("n_ood must be positive or -1 (all), got " + std::to_string(o.n_ood()));
  if (o.bootstrap() < 0) throw UsageError("bootstrap resamples must be >= 0, got " + std::to_string(o.bootstrap()));
  for (const auto& s : o.scores()) check_score(s, e);
  ScoreOptions so;
  so.temperature(o.temperature()).batch(o.batch());
  e.set_training(false);
  // The combined score's scales come from the validation split, never from test or OOD data.
  if (std::find(o.scores().begin(), o.scores().end(), "combined") != o.scores().end())
    so.combined(fit_combined_stats(e, o.in(), "val", -1, so, o.root()));

  DatasetOptions din;
  din.split = "test";
  din.n = o.n_in();
  din.synthetic_n = o.n_in() > 0 ? o.n_in() : 2000;
  din.seed = o.seed();
  din.root = o.root();
  const Dataset in = load_dataset(o.in(), din);
  if (in.size() == 0) throw DataError("in-distribution set '" + o.in() + "' is empty");
  std::vector<Dataset> outs;
  for (const auto& name : o.ood()) {
    DatasetOptions d = din;
    d.n = o.n_ood();
    d.synthetic_n = o.n_ood() > 0 ? o.n_ood() : 2000;
    outs.push_back(load_dataset(name, d));
    if (outs.back().size() == 0) throw DataError("OOD set '" + name + "' is empty");
  }

  const bool grad = std::find(o.scores().begin(), o.scores().end(), "grad-norm") != o.scores().end();
  int64_t total = in.size();
  for (const auto& d : outs) total += d.size();
  std::unique_ptr<Progress> bar;
  if (o.progress()) bar = std::make_unique<Progress>("ood eval", total, 5.0);
  int64_t done = 0;
  auto tick = [&](int64_t k) {
    done += k;
    if (bar) bar->update(done, grad ? "(grad-norm needs autograd)" : "");
  };

  const ScoreSet s_in = compute_scores(e, in.images, o.scores(), so, tick);
  double accuracy = std::nan("");
  if (s_in.predictions.defined() && in.labels.defined() && in.labels.size(0) == in.size())
    accuracy = s_in.predictions.eq(in.labels).to(torch::kFloat64).mean().item<double>();
  std::vector<ScoreSet> s_out;
  for (const auto& d : outs) s_out.push_back(compute_scores(e, d.images, o.scores(), so, tick));
  if (bar) bar->finish();

  std::vector<OodReport> reports;
  for (const auto& score : o.scores()) {
    OodReport r;
    r.score = score;
    r.in = o.in();
    r.n_in = in.size();
    r.temperature = o.temperature();
    r.in_scores = s_in.at(score);
    r.mean_score_in = r.in_scores.mean().item<double>();
    if (score == "combined") r.combined = so.combined();
    r.accuracy = accuracy;
    const auto vin = to_vector(r.in_scores);
    for (size_t j = 0; j < outs.size(); ++j) {
      OodSetResult res;
      res.name = o.ood()[j];
      res.n = outs[j].size();
      res.scores = s_out[j].at(score);
      res.mean_score = res.scores.mean().item<double>();
      const auto vout = to_vector(res.scores);
      res.metrics = ood_metrics(vin, vout);
      if (o.bootstrap() > 0) {
        res.has_ci = true;
        res.ci = ood_metrics_ci(vin, vout, BootstrapOptions().resamples(o.bootstrap()).seed(o.seed() + j));
      }
      r.ood.push_back(res);
    }
    const double k = double(r.ood.size());
    r.mean.n_in = r.n_in;
    for (const auto& x : r.ood) {
      r.mean.auroc += x.metrics.auroc / k;
      r.mean.aupr_in += x.metrics.aupr_in / k;
      r.mean.aupr_out += x.metrics.aupr_out / k;
      r.mean.fpr95 += x.metrics.fpr95 / k;
      r.mean.detection_error += x.metrics.detection_error / k;
      r.mean.n_ood += x.n;
    }
    reports.push_back(std::move(r));
  }
  return reports;
}

json OodReport::to_json() const {
  json j;
  j["score"] = score;
  j["in"] = in;
  j["split"] = "test";
  j["n_in"] = n_in;
  j["temperature"] = temperature;
  j["mean_score_in"] = mean_score_in;
  if (combined.fitted) j["combined_stats"] = combined.to_json();
  json arr = json::array();
  for (const auto& x : ood) {
    json o{{"name", x.name}, {"n", x.n}};
    o.update(x.metrics.to_json());
    o["mean_score"] = x.mean_score;
    if (x.has_ci) o["ci"] = x.ci.to_json();
    arr.push_back(o);
  }
  j["ood"] = arr;
  json m = mean.to_json();
  m["n"] = mean.n_ood;
  j["mean"] = m;
  if (!std::isnan(accuracy)) j["classifier"] = {{"accuracy", accuracy}};
  j["conventions"] = {
      {"score", "higher = more OOD"},
      {"auroc", "ties count half (sklearn roc_auc_score)"},
      {"aupr_in", "average precision, in-distribution positive, ranked by -score"},
      {"aupr_out", "average precision, OOD positive, ranked by score"},
      {"fpr95", "fraction of OOD accepted when 95% of in-distribution is accepted (positive = in-distribution)"},
      {"detection_error", "min over thresholds of 0.5*(1-tpr) + 0.5*fpr"}};
  return j;
}

json reports_json(const std::vector<OodReport>& reports) {
  TORCH_INTERNAL_ASSERT(!reports.empty());
  if (reports.size() == 1) return reports[0].to_json();
  json j{{"in", reports[0].in}, {"split", "test"}, {"n_in", reports[0].n_in}};
  if (!std::isnan(reports[0].accuracy)) j["classifier"] = {{"accuracy", reports[0].accuracy}};
  j["scores"] = json::array();
  for (const auto& r : reports) j["scores"].push_back(r.to_json());
  return j;
}

namespace {

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string pad_right(const std::string& s, size_t w) { return s.size() >= w ? s : s + std::string(w - s.size(), ' '); }
std::string pad_left(const std::string& s, size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; }

std::string header_line(const OodReport& r) {
  std::string s = "in: " + r.in + " (test split, n_in = " + std::to_string(r.n_in) + ")";
  if (!std::isnan(r.accuracy)) s += ", classifier accuracy " + fmt("%.4f", r.accuracy);
  return s;
}

std::string score_label(const OodReport& r) {
  return r.score + ((r.score == "energy" || r.score == "grad-norm") && r.temperature != 1.0
                        ? " (T=" + fmt("%g", r.temperature) + ")"
                        : "");
}

size_t name_width(const OodReport& r) {
  size_t w = 4;
  for (const auto& x : r.ood) w = std::max(w, x.name.size());
  return w + 2;
}

}  // namespace

std::string format_table(const std::vector<OodReport>& reports) {
  TORCH_INTERNAL_ASSERT(!reports.empty());
  const auto& r0 = reports[0];
  const size_t nw = name_width(r0);
  std::ostringstream out;
  out << header_line(r0) << "\n";
  if (reports.size() == 1) {
    out << "score: " << score_label(r0) << " (higher = more OOD)\n";
    out << pad_right("OOD", nw) << pad_left("AUROC", 8) << pad_left("AUPR-In", 9) << pad_left("AUPR-Out", 10)
        << pad_left("FPR95", 8) << pad_left("n", 8) << "\n";
    auto row = [&](const std::string& name, const OodMetrics& m, int64_t n) {
      out << pad_right(name, nw) << pad_left(fmt("%.4f", m.auroc), 8) << pad_left(fmt("%.4f", m.aupr_in), 9)
          << pad_left(fmt("%.4f", m.aupr_out), 10) << pad_left(fmt("%.4f", m.fpr95), 8)
          << pad_left(std::to_string(n), 8) << "\n";
    };
    for (const auto& x : r0.ood) row(x.name, x.metrics, x.n);
    row("mean", r0.mean, r0.mean.n_ood);
    for (const auto& x : r0.ood)
      if (x.has_ci)
        out << "  " << x.name << " 95% CI: AUROC [" << fmt("%.4f", x.ci.auroc[0]) << ", " << fmt("%.4f", x.ci.auroc[1])
            << "]  FPR95 [" << fmt("%.4f", x.ci.fpr95[0]) << ", " << fmt("%.4f", x.ci.fpr95[1]) << "]\n";
    return out.str();
  }
  // Side by side: AUROC and FPR95 of every score; a column is as wide as its label needs.
  std::vector<size_t> cw;
  for (const auto& r : reports) cw.push_back(std::max<size_t>(16, score_label(r).size() + 2));
  out << pad_right("", nw);
  for (size_t i = 0; i < reports.size(); ++i) out << pad_left(score_label(reports[i]), cw[i]);
  out << pad_left("n", 8) << "\n" << pad_right("OOD", nw);
  for (size_t i = 0; i < reports.size(); ++i) out << pad_left("AUROC", cw[i] - 8) << pad_left("FPR95", 8);
  out << pad_left("", 8) << "\n";
  for (size_t j = 0; j <= r0.ood.size(); ++j) {
    const bool mean = j == r0.ood.size();
    out << pad_right(mean ? "mean" : r0.ood[j].name, nw);
    for (size_t i = 0; i < reports.size(); ++i) {
      const OodMetrics& m = mean ? reports[i].mean : reports[i].ood[j].metrics;
      out << pad_left(fmt("%.4f", m.auroc), cw[i] - 8) << pad_left(fmt("%.4f", m.fpr95), 8);
    }
    out << pad_left(std::to_string(mean ? r0.mean.n_ood : r0.ood[j].n), 8) << "\n";
  }
  return out.str();
}

std::string format_markdown(const std::vector<OodReport>& reports) {
  TORCH_INTERNAL_ASSERT(!reports.empty());
  const auto& r0 = reports[0];
  std::ostringstream out;
  out << header_line(r0) << ". Scores: higher = more OOD. FPR95 = fraction of OOD accepted when 95% of "
      << "in-distribution is accepted.\n\n";
  if (reports.size() > 1) {
    out << "| OOD | n |";
    for (const auto& r : reports) out << " " << score_label(r) << " AUROC | " << score_label(r) << " FPR95 |";
    out << "\n|---|---:|";
    for (size_t i = 0; i < reports.size(); ++i) out << "---:|---:|";
    out << "\n";
    for (size_t j = 0; j <= r0.ood.size(); ++j) {
      const bool mean = j == r0.ood.size();
      out << "| " << (mean ? "**mean**" : r0.ood[j].name) << " | " << (mean ? r0.mean.n_ood : r0.ood[j].n) << " |";
      for (const auto& r : reports) {
        const OodMetrics& m = mean ? r.mean : r.ood[j].metrics;
        out << " " << fmt("%.4f", m.auroc) << " | " << fmt("%.4f", m.fpr95) << " |";
      }
      out << "\n";
    }
    out << "\n";
  }
  for (const auto& r : reports) {
    out << "Score **" << score_label(r) << "**\n\n"
        << "| OOD | AUROC | AUPR-In | AUPR-Out | FPR95 | detection error | n |\n"
        << "|---|---:|---:|---:|---:|---:|---:|\n";
    auto row = [&](const std::string& name, const OodMetrics& m, int64_t n) {
      out << "| " << name << " | " << fmt("%.4f", m.auroc) << " | " << fmt("%.4f", m.aupr_in) << " | "
          << fmt("%.4f", m.aupr_out) << " | " << fmt("%.4f", m.fpr95) << " | " << fmt("%.4f", m.detection_error)
          << " | " << n << " |\n";
    };
    for (const auto& x : r.ood) row(x.name, x.metrics, x.n);
    row("**mean**", r.mean, r.mean.n_ood);
    out << "\n";
  }
  return out.str();
}

std::string format_csv(const std::vector<OodReport>& reports) {
  std::ostringstream out;
  out << "score,temperature,in,ood,n_in,n,auroc,aupr_in,aupr_out,fpr95,detection_error\n";
  auto quote = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  for (const auto& r : reports) {
    auto row = [&](const std::string& name, const OodMetrics& m, int64_t n) {
      out << r.score << "," << fmt("%.17g", r.temperature) << "," << quote(r.in) << "," << quote(name) << ","
          << r.n_in << "," << n << "," << fmt("%.17g", m.auroc) << "," << fmt("%.17g", m.aupr_in) << ","
          << fmt("%.17g", m.aupr_out) << "," << fmt("%.17g", m.fpr95) << "," << fmt("%.17g", m.detection_error)
          << "\n";
    };
    for (const auto& x : r.ood) row(x.name, x.metrics, x.n);
    row("mean", r.mean, r.mean.n_ood);
  }
  return out.str();
}

std::string format_scores_csv(const std::vector<OodReport>& reports) {
  TORCH_CHECK(!reports.empty(), "format_scores_csv: no reports");
  std::ostringstream out;
  out << "set,index";
  for (const auto& r : reports) out << "," << r.score;
  out << "\n";
  auto rows = [&](const std::string& set, const std::function<torch::Tensor(const OodReport&)>& col) {
    std::vector<torch::Tensor> cols;
    for (const auto& r : reports) cols.push_back(col(r).to(torch::kFloat64).contiguous());
    const int64_t n = cols[0].size(0);
    for (const auto& c : cols) TORCH_CHECK(c.size(0) == n, "format_scores_csv: reports of different sizes for ", set);
    for (int64_t i = 0; i < n; ++i) {
      out << set << "," << i;
      for (const auto& c : cols) out << "," << fmt("%.9g", c.data_ptr<double>()[i]);
      out << "\n";
    }
  };
  rows("in:" + reports[0].in, [](const OodReport& r) { return r.in_scores; });
  for (size_t k = 0; k < reports[0].ood.size(); ++k)
    rows(reports[0].ood[k].name, [k](const OodReport& r) { return r.ood.at(k).scores; });
  return out.str();
}

// ================================================================ plots

namespace {

std::string safe_name(const std::string& s) {
  std::string o;
  for (char c : s) o += (std::isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-') ? c : '-';
  return o;
}

std::string short_num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// Histogram of in-distribution (filled grey) vs one OOD set (black outline).
void plot_hist(const OodReport& r, const OodSetResult& o, const std::string& path) {
  const int64_t W = 720, H = 440, L = 64, R = 20, T = 66, B = 62;
  const int64_t pw = W - L - R, ph = H - T - B;
  Canvas c(W, H);
  const auto vin = to_vector(r.in_scores), vout = to_vector(o.scores);
  std::vector<double> all(vin);
  all.insert(all.end(), vout.begin(), vout.end());
  // The 0.5..99.5 percentile range of the pooled scores; outliers go to the edge bins.
  double lo = percentile(all, 0.5), hi = percentile(all, 99.5);
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const int nb = 60;
  auto hist = [&](const std::vector<double>& v) {
    std::vector<double> h(nb, 0.0);
    for (double x : v) {
      int b = int(std::floor((x - lo) / (hi - lo) * nb));
      h[std::clamp(b, 0, nb - 1)] += 1.0 / double(v.size());
    }
    return h;
  };
  const auto hin = hist(vin), hout = hist(vout);
  double ymax = 1e-12;
  for (int b = 0; b < nb; ++b) ymax = std::max({ymax, hin[b], hout[b]});
  ymax *= 1.08;
  auto X = [&](double v) { return L + (v - lo) / (hi - lo) * pw; };
  auto Y = [&](double f) { return T + ph - f / ymax * ph; };
  for (int b = 0; b < nb; ++b) {  // in-distribution: filled light grey
    const int64_t x0 = std::lround(L + double(b) * pw / nb), x1 = std::lround(L + double(b + 1) * pw / nb) - 1;
    if (hin[b] > 0) c.rect(x0, std::lround(Y(hin[b])), x1, T + ph, 0.72f);
  }
  double prev_y = T + ph;  // OOD: black step outline
  for (int b = 0; b < nb; ++b) {
    const double x0 = L + double(b) * pw / nb, x1 = L + double(b + 1) * pw / nb, y = Y(hout[b]);
    c.line(x0, prev_y, x0, y, 0.0f, 2);
    c.line(x0, y, x1, y, 0.0f, 2);
    prev_y = y;
  }
  c.line(L + pw, prev_y, L + pw, T + ph, 0.0f, 2);
  // The threshold that accepts 95% of the in-distribution set (fpr95's threshold).
  const auto roc = ood_roc_curve(vin, vout);
  for (size_t i = 0; i < roc.tpr.size(); ++i)
    if (roc.tpr[i] >= 0.95) {
      const double t = roc.thresholds[i];
      if (t >= lo && t <= hi) {
        c.line(X(t), T, X(t), T + ph, 0.35f, 1, 6, 4);
        const std::string lab = "95% IN ACCEPTED";
        const int64_t tx = std::lround(X(t)) + 4 + Canvas::text_width(lab) <= L + pw
                               ? std::lround(X(t)) + 4
                               : std::lround(X(t)) - 4 - Canvas::text_width(lab);
        c.text(tx, T + 4, lab, 1, 0.35f);
      }
      break;
    }
  // Axes, ticks, labels.
  c.line(L, T + ph, L + pw, T + ph, 0.0f);
  c.line(L, T, L, T + ph, 0.0f);
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    const int64_t x = std::lround(X(v));
    c.line(x, T + ph, x, T + ph + 4, 0.0f);
    const std::string s = short_num(v);
    c.text(x - Canvas::text_width(s) / 2, T + ph + 8, s);
    const double f = ymax * k / 4.0;
    const int64_t y = std::lround(Y(f));
    c.line(L - 4, y, L, y, 0.0f);
    char fb[32];
    std::snprintf(fb, sizeof fb, "%.3g", f);
    const std::string fs = fb;
    c.text(L - 6 - Canvas::text_width(fs), y - 3, fs);
  }
  const std::string xl = r.score + " (higher = more OOD)";
  c.text(L + pw / 2 - Canvas::text_width(xl) / 2, H - 22, xl);
  c.text(6, T - 14, "FRACTION PER BIN");
  const std::string title = r.score + ": " + r.in + " vs " + o.name + "   AUROC " + fmt("%.4f", o.metrics.auroc) +
                            "   FPR95 " + fmt("%.4f", o.metrics.fpr95);
  c.text(L, 8, title, 1);
  // Legend, above the plot.
  const int64_t ly = 28;
  c.rect(L, ly, L + 18, ly + 8, 0.72f);
  const int64_t w1 = c.text(L + 26, ly + 1, "IN " + r.in + " TEST (" + std::to_string(r.n_in) + ")");
  const int64_t lx = L + 26 + w1 + 30;
  c.line(lx, ly + 4, lx + 18, ly + 4, 0.0f, 2);
  c.text(lx + 26, ly + 1, "OOD " + o.name + " (" + std::to_string(o.n) + ")");
  c.save(path);
}

// ROC curves (in-distribution positive) for one score: one panel per OOD
// set (small multiples read better than overlaid grey curves).
void plot_roc(const OodReport& r, const std::string& path) {
  const int64_t n = int64_t(r.ood.size()), cols = std::min<int64_t>(3, n), rows = (n + cols - 1) / cols;
  const int64_t P = 240, ML = 56, MR = 24, MT = 44, MB = 40, top = 46;
  const int64_t cw = ML + P + MR, ch = MT + P + MB;
  Canvas c(std::max<int64_t>(cols * cw, 560), top + rows * ch);
  c.text(10, 8, "ROC " + r.score + ", IN " + r.in + " (" + std::to_string(r.n_in) + " TEST IMAGES), IN-DISTRIBUTION POSITIVE");
  c.text(10, 24, "X = OOD ACCEPTED (FPR), Y = IN ACCEPTED (TPR). DASHED: TPR 0.95, WHERE FPR95 IS READ (SQUARE)", 1, 0.3f);
  const auto vin = to_vector(r.in_scores);
  for (int64_t j = 0; j < n; ++j) {
    const auto& o = r.ood[j];
    const int64_t ox = (j % cols) * cw + ML, oy = top + (j / cols) * ch + MT;
    auto X = [&](double f) { return ox + f * P; };
    auto Y = [&](double t) { return oy + P - t * P; };
    c.text(ox, oy - 34, o.name + " (" + std::to_string(o.n) + ")");
    c.text(ox, oy - 20, "AUROC " + fmt("%.4f", o.metrics.auroc) + "  FPR95 " + fmt("%.4f", o.metrics.fpr95), 1, 0.3f);
    for (int k = 1; k < 4; ++k) {
      c.line(X(k / 4.0), oy, X(k / 4.0), oy + P, 0.9f);
      c.line(ox, Y(k / 4.0), ox + P, Y(k / 4.0), 0.9f);
    }
    c.polyline({{X(0), Y(0)}, {X(1), Y(1)}}, 0.6f, 1, 2, 4);
    c.polyline({{X(0), Y(0.95)}, {X(1), Y(0.95)}}, 0.4f, 1, 6, 4);
    const auto roc = ood_roc_curve(vin, to_vector(o.scores));
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < roc.fpr.size(); ++i) pts.emplace_back(X(roc.fpr[i]), Y(roc.tpr[i]));
    c.polyline(pts, 0.0f, 2);
    for (size_t i = 0; i < roc.tpr.size(); ++i)
      if (roc.tpr[i] >= 0.95) {
        const int64_t mx = std::lround(X(roc.fpr[i])), my = std::lround(Y(roc.tpr[i]));
        c.rect(mx - 3, my - 3, mx + 3, my + 3, 0.0f);
        break;
      }
    c.line(ox, oy, ox + P, oy, 0.0f);
    c.line(ox, oy + P, ox + P, oy + P, 0.0f);
    c.line(ox, oy, ox, oy + P, 0.0f);
    c.line(ox + P, oy, ox + P, oy + P, 0.0f);
    for (int k = 0; k <= 2; ++k) {
      const std::string s = fmt("%.1f", k / 2.0);
      c.line(X(k / 2.0), oy + P, X(k / 2.0), oy + P + 3, 0.0f);
      c.text(std::lround(X(k / 2.0)) - Canvas::text_width(s) / 2, oy + P + 7, s);
      c.line(ox - 3, Y(k / 2.0), ox, Y(k / 2.0), 0.0f);
      c.text(ox - 6 - Canvas::text_width(s), std::lround(Y(k / 2.0)) - 3, s);
    }
    c.text(ox + P / 2 - Canvas::text_width("OOD ACCEPTED") / 2, oy + P + 20, "OOD ACCEPTED", 1, 0.3f);
  }
  c.save(path);
}

}  // namespace

std::vector<std::string> write_ood_plots(const std::vector<OodReport>& reports, const std::string& dir) {
  make_dirs(dir);
  std::vector<std::string> paths;
  for (const auto& r : reports) {
    for (const auto& o : r.ood) {
      const std::string p = dir + "/" + safe_name(r.score) + "-hist-" + safe_name(o.name) + ".png";
      plot_hist(r, o, p);
      paths.push_back(p);
    }
    const std::string p = dir + "/" + safe_name(r.score) + "-roc.png";
    plot_roc(r, p);
    paths.push_back(p);
  }
  return paths;
}

// ================================================================ calibration

double Detector::p_value(double s) const {
  const auto it = std::lower_bound(val_scores.begin(), val_scores.end(), s);
  const double ge = double(val_scores.end() - it);
  return (1.0 + ge) / (double(val_scores.size()) + 1.0);
}

json Detector::to_json() const {
  int64_t accepted = 0;
  for (double v : val_scores) accepted += v <= threshold;
  json j{{"format", "ebmkit-ood-detector"},
          {"version", 1},
          {"model", model},
          {"model_hash", model_hash},
          {"score", score},
          {"temperature", temperature},
          {"threshold", threshold},
          {"percentile", percentile},
          {"n_val", n_val()},
          {"in", in},
          {"split", split},
          {"val_accept_rate", val_scores.empty() ? 0.0 : double(accepted) / double(val_scores.size())},
          {"rule", "ood = score > threshold; p_value = (1 + #{val_scores >= score}) / (n_val + 1); "
                   "score: higher = more OOD"},
          {"val_scores", val_scores}};
  if (combined.fitted) j["combined_stats"] = combined.to_json();
  return j;
}

Detector Detector::from_json(const json& j, const std::string& source) {
  auto bad = [&](const std::string& why) { return DataError("detector '" + source + "': " + why); };
  if (!j.is_object()) throw bad("not a JSON object");
  if (j.value("format", "") != "ebmkit-ood-detector")
    throw bad("\"format\" is not \"ebmkit-ood-detector\" (is this a detector from `ebm ood calibrate`?)");
  if (j.value("version", 0) != 1) throw bad("unsupported version " + j.value("version", json()).dump());
  auto need = [&](const char* k, bool ok) {
    if (!j.contains(k)) throw bad(std::string("missing \"") + k + "\"");
    if (!ok) throw bad(std::string("\"") + k + "\" has the wrong type: " + j[k].dump().substr(0, 60));
  };
  need("model", j.contains("model") && j["model"].is_string());
  need("model_hash", j.contains("model_hash") && j["model_hash"].is_string());
  need("score", j.contains("score") && j["score"].is_string());
  need("temperature", j.contains("temperature") && j["temperature"].is_number());
  need("threshold", j.contains("threshold") && j["threshold"].is_number());
  need("percentile", j.contains("percentile") && j["percentile"].is_number());
  need("val_scores", j.contains("val_scores") && j["val_scores"].is_array());
  Detector d;
  d.model = j["model"];
  d.model_hash = j["model_hash"];
  d.score = j["score"];
  d.temperature = j["temperature"];
  d.threshold = j["threshold"];
  d.percentile = j["percentile"];
  d.in = j.value("in", "");
  d.split = j.value("split", "");
  const auto& names = score_names();
  if (std::find(names.begin(), names.end(), d.score) == names.end()) throw bad("unknown score '" + d.score + "'");
  if (!(d.temperature > 0)) throw bad("temperature must be > 0");
  if (!std::isfinite(d.threshold)) throw bad("threshold is not finite");
  for (const auto& v : j["val_scores"]) {
    if (!v.is_number()) throw bad("val_scores holds a non-number: " + v.dump().substr(0, 40));
    d.val_scores.push_back(v.get<double>());
  }
  if (d.val_scores.empty()) throw bad("val_scores is empty");
  if (d.score == "combined") {
    if (!j.contains("combined_stats")) throw bad("score \"combined\" but no \"combined_stats\"");
    d.combined = CombinedStats::from_json(j["combined_stats"], "detector '" + source + "'");
  }
  if (!std::is_sorted(d.val_scores.begin(), d.val_scores.end())) throw bad("val_scores are not sorted ascending");
  if (j.contains("n_val") && j["n_val"] != d.n_val())
    throw bad("n_val " + j["n_val"].dump() + " but " + std::to_string(d.n_val()) + " val_scores");
  return d;
}

Detector Detector::load(const std::string& path) {
  const std::string text = read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw DataError("detector '" + path + "': invalid JSON: " + e.what());
  }
  return from_json(j, path);
}

void Detector::save(const std::string& path) const { write_file_atomic(path, to_json().dump(1) + "\n"); }

Detector fit_detector(const torch::Tensor& val_scores, double percentile) {
  if (!(percentile > 0 && percentile <= 100))
    throw UsageError("percentile must be in (0, 100], got " + fmt("%g", percentile));
  Detector d;
  d.val_scores = to_vector(val_scores);
  if (d.val_scores.empty()) throw UsageError("calibration needs at least one validation image");
  for (double v : d.val_scores)
    if (!std::isfinite(v)) throw DivergenceError("a validation score is NaN/Inf");
  std::sort(d.val_scores.begin(), d.val_scores.end());
  const int64_t n = d.n_val();
  // k = ceil(p/100 * n), computed as p*n/100 so that integral cases stay exact.
  int64_t k = int64_t(std::ceil(percentile * double(n) / 100.0 - 1e-9));
  k = std::clamp<int64_t>(k, 1, n);
  d.threshold = d.val_scores[k - 1];
  d.percentile = percentile;
  return d;
}

Detector calibrate(Energy& e, const CalibrateOptions& o) {
  check_score(o.score(), e);
  if (o.n() == 0 || o.n() < -1) throw UsageError("n must be positive or -1 (all), got " + std::to_string(o.n()));
  if (o.split() == "test")
    throw UsageError("calibrating on the test split would leak into evaluation; use the val split");
  DatasetOptions dopt;
  dopt.split = o.split();
  dopt.n = o.n();
  dopt.root = o.root();
  const Dataset val = load_dataset(o.in(), dopt);
  if (val.size() == 0) throw DataError("calibration set '" + o.in() + "' (" + o.split() + ") is empty");
  e.set_training(false);
  auto so = ScoreOptions().temperature(o.temperature()).batch(o.batch());
  // "combined" is standardised on the same validation images its threshold is fitted on.
  if (canonical_score(o.score()) == "combined") {
    so.combined(fit_combined_stats(e, val.images, so));
    so.combined().fitted_on = o.in() + "/" + val.split + " (" + std::to_string(val.size()) + " images)";
  }
  std::unique_ptr<Progress> bar;
  if (o.progress()) bar = std::make_unique<Progress>("ood calibrate", val.size(), 5.0);
  int64_t done = 0;
  const auto s = compute_scores(e, val.images, {o.score()}, so, [&](int64_t k) {
                                  done += k;
                                  if (bar) bar->update(done);
                                }).at(o.score());
  if (bar) bar->finish();
  Detector d = fit_detector(s, o.percentile());
  d.score = canonical_score(o.score());
  d.temperature = o.temperature();
  d.in = o.in();
  d.split = val.split;
  d.combined = so.combined();
  return d;
}

Detector calibrate_model(const std::string& model_path, const CalibrateOptions& o) {
  auto e = load_model(model_path);
  Detector d = calibrate(*e, o);
  d.model = model_path;
  d.model_hash = model_hash(model_path);
  return d;
}

void check_model(const Detector& d, const std::string& model_path) {
  const std::string h = model_hash(model_path);
  if (h != d.model_hash)
    throw DataError("model '" + model_path + "' does not match the detector: its hash is " + h +
                    ", the detector was calibrated for '" + d.model + "' with hash " + d.model_hash +
                    "; recalibrate with `ebm ood calibrate --model " + model_path + "`");
}

std::string detector_model_path(const Detector& d, const std::string& detector_path,
                                const std::string& override_path) {
  if (!override_path.empty()) return override_path;
  struct stat st;
  if (::stat(d.model.c_str(), &st) == 0) return d.model;
  const auto slash = detector_path.find_last_of('/');
  if (!d.model.empty() && d.model[0] != '/' && slash != std::string::npos) {
    const std::string rel = detector_path.substr(0, slash + 1) + d.model;
    if (::stat(rel.c_str(), &st) == 0) return rel;
    throw DataError("the detector's model '" + d.model + "' does not exist (also tried '" + rel + "'); pass --model");
  }
  throw DataError("the detector's model '" + d.model + "' does not exist; pass --model");
}

json Prediction::to_json(const std::string& score_name) const {
  return {{"index", index}, {"energy", score}, {"ood", ood}, {"p_value", p_value}, {"score", score_name}};
}

std::vector<Prediction> predict(const Detector& d, Energy& e, const torch::Tensor& x, int64_t batch) {
  e.set_training(false);
  const auto s = to_vector(
      ood_score(e, x, d.score, ScoreOptions().temperature(d.temperature).batch(batch).combined(d.combined)));
  std::vector<Prediction> out;
  for (size_t i = 0; i < s.size(); ++i) out.push_back({int64_t(i), s[i], d.is_ood(s[i]), d.p_value(s[i])});
  return out;
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
