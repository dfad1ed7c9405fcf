// attributes.cpp: attribute models, expression -> energy, calibration, judges.
#include "ebm/compose/attributes.h"

#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "ebm/core/chains.h"
#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/compose.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/core/models.h"
#include "ebm/compose/morphology.h"

namespace ebm {

// ---------------------------------------------------------------- attribute models

AttributeSet::AttributeSet(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    AttributeModel m;
    m.path = p;
    m.card = load_card(p);
    const json a = m.card.value("attribute", json());
    if (!a.is_object() || !a.contains("attribute") || !a.contains("classes") || !a["classes"].is_array())
      throw DataError("'" + p + "' is not an attribute model (its card has no \"attribute\": {\"attribute\", "
                      "\"classes\"}); train one with `ebm train --task attribute`");
    m.name = a["attribute"].get<std::string>();
    for (const auto& c : a["classes"]) m.classes.push_back(c.get<std::string>());
    m.nll = m.card.value("class_energy", "nll") == "nll";
    if (m.card.contains("calibration") && m.card["calibration"].contains("temperature"))
      m.temperature = m.card["calibration"]["temperature"].get<double>();
    m.model = load_model(p);
    if (m.model->num_classes() != int64_t(m.classes.size()))
      throw DataError("'" + p + "': the card lists " + std::to_string(m.classes.size()) + " classes, the model has " +
                      std::to_string(m.model->num_classes()));
    if (find(m.name)) throw UsageError("two models for attribute '" + m.name + "' (" + find(m.name)->path + ", " + p + ")");
    models_.push_back(std::move(m));
  }
}

const AttributeModel* AttributeSet::find(const std::string& name) const {
  for (const auto& m : models_)
    if (m.name == name) return &m;
  return nullptr;
}

std::string AttributeSet::available() const {
  if (models_.empty()) return "none (pass --attr-models)";
  std::string s;
  for (const auto& m : models_) {
    s += (s.empty() ? "" : ", ") + m.name + "=";
    for (size_t i = 0; i < m.classes.size(); ++i) s += (i ? "|" : "") + m.classes[i];
  }
  return s;
}

std::pair<int64_t, int64_t> AttributeSet::resolve(const std::string& atom) const {
  const auto eq = atom.find('=');
  if (eq != std::string::npos) {
    const std::string name = atom.substr(0, eq), value = atom.substr(eq + 1);
    for (size_t i = 0; i < models_.size(); ++i) {
      if (models_[i].name != name) continue;
      for (size_t c = 0; c < models_[i].classes.size(); ++c)
        if (models_[i].classes[c] == value) return {int64_t(i), int64_t(c)};
      throw UsageError("attribute '" + name + "' has no value '" + value + "' (available: " + available() + ")");
    }
    throw UsageError("unknown attribute '" + name + "' (available: " + available() + ")");
  }
  // An alias: a value of exactly one attribute.
  std::pair<int64_t, int64_t> hit{-1, -1};
  int hits = 0;
  for (size_t i = 0; i < models_.size(); ++i) {
    if (models_[i].name == atom)
      throw UsageError("attribute '" + atom + "' needs a value, e.g. " + atom + "=" + models_[i].classes[0] +
                       " (available: " + available() + ")");
    for (size_t c = 0; c < models_[i].classes.size(); ++c)
      if (models_[i].classes[c] == atom) hit = {int64_t(i), int64_t(c)}, ++hits;
  }
  if (hits == 1) return hit;
  if (hits > 1) throw UsageError("'" + atom + "' is a value of several attributes; write name=" + atom);
  throw UsageError("unknown attribute value '" + atom + "' (available: " + available() + ")");
}

EnergyPtr AttributeSet::atom_energy(const std::string& atom) const {
  if (atom.rfind("model:", 0) == 0) return load_model(atom.substr(6));
  const auto [mi, ci] = resolve(atom);
  const auto& m = models_[size_t(mi)];
  return std::make_shared<ClassEnergy>(m.model, ci, m.nll, m.temperature);
}

// ---------------------------------------------------------------- expression -> energy

namespace {

EnergyPtr build_expr(const Expr& e, const AttributeSet& a, const ComposeOptions& o);

// Scaled terms of an AND: flattens nested ANDs, NOT and weights into (weight, energy).
void and_terms(const Expr& e, double w, const AttributeSet& a, const ComposeOptions& o,
               std::vector<SumEnergy::Term>& out) {
  switch (e.kind) {
    case Expr::Kind::And:
      for (const auto& k : e.kids) and_terms(k, w, a, o, out);
      return;
    case Expr::Kind::Not:
      and_terms(e.kids[0], -o.not_weight() * w, a, o, out);
      return;
    case Expr::Kind::Weight:
      and_terms(e.kids[0], e.weight * w, a, o, out);
      return;
    default:
      out.push_back({w, build_expr(e, a, o)});
  }
}

EnergyPtr build_expr(const Expr& e, const AttributeSet& a, const ComposeOptions& o) {
  if (e.kind == Expr::Kind::Atom) return a.atom_energy(e.atom);
  if (e.kind == Expr::Kind::Or) {
    std::vector<EnergyPtr> kids;
    for (const auto& k : e.kids) kids.push_back(build_expr(k, a, o));
    return make_or(std::move(kids), o.or_temperature());
  }
  std::vector<SumEnergy::Term> terms;
  and_terms(e, 1.0, a, o, terms);
  return std::make_shared<SumEnergy>(std::move(terms));
}

}  // namespace

EnergyPtr build_energy(const Expr& e, const AttributeSet& attrs, const ComposeOptions& o, EnergyPtr prior) {
  if (!(o.not_weight() >= 0)) throw UsageError("--not-weight must be >= 0, got " + std::to_string(o.not_weight()));
  if (!(o.or_temperature() > 0)) throw UsageError("--or-temperature must be > 0, got " + std::to_string(o.or_temperature()));
  if (!(o.guidance() > 0)) throw UsageError("--guidance must be > 0, got " + std::to_string(o.guidance()));
  if (o.guide_on() != "denoised" && o.guide_on() != "noisy")
    throw UsageError("--guide-on must be denoised or noisy, got '" + o.guide_on() + "'");
  EnergyPtr body = build_expr(e, attrs, o);
  if (prior && prior->noise_conditional() && o.guide_on() == "denoised") {
    // prior_weight * prior + guidance * body(x_hat), with the prior's one pass
    // per step serving both its own term and the Tweedie estimate.
    if (o.guidance() != 1.0) body = std::make_shared<SumEnergy>(std::vector<SumEnergy::Term>{{o.guidance(), body}});
    return std::make_shared<DenoisedGuidanceEnergy>(body, prior, o.prior_weight());
  }
  if ((!prior || o.prior_weight() == 0) && o.guidance() == 1.0) return body;
  std::vector<SumEnergy::Term> t{{o.guidance(), body}};
  if (prior && o.prior_weight() != 0) t.insert(t.begin(), {o.prior_weight(), prior});
  return std::make_shared<SumEnergy>(std::move(t));
}

// ---------------------------------------------------------------- calibration

namespace {

// Labels of the attribute on `x` as its training run defined them.
torch::Tensor attribute_labels(const json& card, const Dataset& d) {
  const json a = card["attribute"];
  const std::string name = a.value("attribute", "");
  if (name == "thickness") {
    const auto b = a.at("tercile_boundaries");
    const auto t = stroke_thickness(d.images);
    return thickness_class(t, b[0].get<double>(), b[1].get<double>());
  }
  if (!d.labels.defined()) throw DataError("dataset '" + d.name + "' has no labels for attribute '" + name + "'");
  return d.labels;
}

}  // namespace

json calibrate_attribute(const std::string& path, const std::string& root) {
  AttributeSet set({path});
  const auto& m = set.models()[0];
  DatasetOptions dopt;
  dopt.split = "val";
  dopt.root = root;
  const std::string data = m.card.value("data", "mnist");
  const Dataset val = load_dataset(data, dopt);
  const auto y = attribute_labels(m.card, val);
  torch::Tensor logits;
  {
    torch::NoGradGuard ng;
    m.model->set_training(false);
    std::vector<torch::Tensor> parts;
    for (int64_t i = 0; i < val.size(); i += 256)
      parts.push_back(m.model->logits(val.images.narrow(0, i, std::min<int64_t>(256, val.size() - i))));
    logits = torch::cat(parts).to(torch::kFloat64);
  }
  auto nll = [&](double t) {
    return torch::nn::functional::cross_entropy(logits / t, y).item<double>();
  };
  // Golden-section search on log T: the NLL of temperature scaling is unimodal in T.
  double lo = std::log(0.05), hi = std::log(20.0);
  const double g = (std::sqrt(5.0) - 1) / 2;
  double a = hi - g * (hi - lo), b = lo + g * (hi - lo);
  double fa = nll(std::exp(a)), fb = nll(std::exp(b));
  for (int it = 0; it < 60; ++it) {
    if (fa < fb) {
      hi = b, b = a, fb = fa, a = hi - g * (hi - lo), fa = nll(std::exp(a));
    } else {
      lo = a, a = b, fa = fb, b = lo + g * (hi - lo), fb = nll(std::exp(b));
    }
  }
  const double t = std::exp(0.5 * (lo + hi));
  json cal{{"temperature", t},
           {"nll_t1", nll(1.0)},
           {"nll", nll(t)},
           {"accuracy", logits.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>()},
           {"split", data + "/val"},
           {"n", val.size()},
           {"method", "temperature scaling (Guo et al. 2017): T minimising the mean NLL on the val split; "
                      "atoms use -log softmax(logits/T)[c]"}};
  json card = m.card;
  card["calibration"] = cal;
  write_file_atomic(path + "/card.json", card.dump(2) + "\n");
  return cal;
}

// ---------------------------------------------------------------- judges

Judgement judge(const Judges& j, const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 1, "judge: x must be [N,1,H,W], got ", x.sizes());
  Judgement r;
  if (j.digit) {
    torch::NoGradGuard ng;
    j.digit->set_training(false);
    const auto p = torch::softmax(j.digit->logits(x), 1);
    auto [conf, arg] = p.max(1);
    r.digit = arg;
    r.confidence = conf;
  }
  if (j.has_thickness) {
    r.thickness = stroke_thickness(x);
    r.thick_class = thickness_class(r.thickness, j.thick_lo, j.thick_hi);
  }
  return r;
}

torch::Tensor atom_satisfied(const std::string& atom, const AttributeSet& attrs, const Judgement& j) {
  if (atom.rfind("model:", 0) == 0) throw UsageError("no judge for the whole-model atom '" + atom + "'");
  const auto [mi, ci] = attrs.resolve(atom);
  const auto& name = attrs.models()[size_t(mi)].name;
  if (name == "digit") {
    if (!j.digit.defined()) throw UsageError("no digit judge (pass --judge)");
    return j.digit.eq(ci);
  }
  if (name == "thickness") {
    if (!j.thick_class.defined()) throw UsageError("no thickness judge");
    return j.thick_class.eq(ci);
  }
  throw UsageError("no judge for attribute '" + name + "' (judged: digit, thickness)");
}

torch::Tensor satisfies(const Expr& e, const AttributeSet& attrs, const Judgement& j) {
  switch (e.kind) {
    case Expr::Kind::Atom:
      return atom_satisfied(e.atom, attrs, j);
    case Expr::Kind::Not:
      return torch::logical_not(satisfies(e.kids[0], attrs, j));
    case Expr::Kind::Weight:
      return satisfies(e.kids[0], attrs, j);
    case Expr::Kind::And:
    case Expr::Kind::Or: {
      auto acc = satisfies(e.kids[0], attrs, j);
      for (size_t i = 1; i < e.kids.size(); ++i) {
        const auto k = satisfies(e.kids[i], attrs, j);
        acc = e.kind == Expr::Kind::And ? torch::logical_and(acc, k) : torch::logical_or(acc, k);
      }
      return acc;
    }
  }
  return {};
}

double mean_pairwise_l2(const torch::Tensor& x) {
  TORCH_CHECK(x.size(0) >= 2, "mean_pairwise_l2 needs >= 2 rows, got ", x.size(0));
  const auto f = x.flatten(1).to(torch::kFloat64);
  const auto d = torch::cdist(f, f);
  const int64_t n = f.size(0);
  return d.sum().item<double>() / double(n * (n - 1));
}

}  // namespace ebm

namespace ebm {

LangevinOptions composition_sampler() {
  return LangevinOptions()
      .steps(200)
      .step_size(0.01)
      .noise(0.1)
      .grad_clip(0.0)
      .step_schedule(Schedule::parse("geometric:0.1"))
      .noise_schedule(Schedule::parse("geometric:0.02"));
}

ComposeSamples compose_sample(Energy& e, int64_t n, const ComposeSampleOptions& o,
                              const std::function<void(int64_t, int64_t)>& on_step) {
  if (n < 1) throw UsageError("--n must be >= 1, got " + std::to_string(n));
  if (o.restarts() < 1) throw UsageError("--restarts must be >= 1, got " + std::to_string(o.restarts()));
  const bool annealed = resolve_sampler(o.sampler(), e.noise_conditional()) == "annealed";
  auto gen = at::detail::createCPUGenerator(o.seed());
  const int64_t total = n * o.restarts(),
                steps = annealed ? o.annealed().levels() * o.annealed().steps_per_level() : o.langevin().steps();
  std::vector<torch::Tensor> xs, es, ss;
  int64_t done = 0;
  for (int64_t i = 0; i < total; i += o.batch()) {
    const int64_t b = std::min(o.batch(), total - i);
    torch::Tensor x0;
    if (o.init_pool().defined()) {
      const auto idx = torch::randint(o.init_pool().size(0), {b}, gen, torch::kInt64);
      x0 = (o.init_pool().index_select(0, idx) + o.init_noise() * torch::randn({b, 1, 28, 28}, gen)).clamp(0, 1);
    } else {
      x0 = torch::rand({b, 1, 28, 28}, gen);
    }
    if (annealed) {
      const int64_t per = o.annealed().steps_per_level();
      const auto r = annealed_langevin(e, x0, o.annealed(), &gen, [&](int64_t level, int64_t) {
        if (on_step) on_step(done + level * per * b, total * steps);
      });
      torch::NoGradGuard ng;
      xs.push_back(r.x.clamp(0, 1));  // the chain runs unclamped (annealed.h); images are [0,1]
      es.push_back(e.energy(xs.back()).detach());
    } else {
      const auto r = langevin(e, x0, o.langevin(), {}, &gen, [&](const LangevinStep& s) {
        if (on_step) on_step((done + (s.step + 1) * b), total * steps);
      });
      if (r.diverged) throw DivergenceError("composition sampling diverged at step " + std::to_string(r.steps_run) +
                                            "; lower --step-size or raise --grad-clip");
      xs.push_back(r.x);
      es.push_back(r.energy.detach());
    }
    done += b * steps;
    const auto& xk = xs.back();
    if (o.select_energy()) {
      torch::NoGradGuard ng;
      ss.push_back(o.select_energy()->energy(xk).detach());
    }
  }
  // Chain k of sample j is row k*n + j; keep each sample's lowest-energy chain.
  const auto en = torch::cat(es);
  const auto sel = o.select_energy() ? torch::cat(ss) : en;
  const auto rows = best_of_k_rows(sel, o.restarts());
  ComposeSamples out;
  out.x = torch::cat(xs).index_select(0, rows);
  out.energy = en.index_select(0, rows);
  out.select = sel.index_select(0, rows);
  return out;
}

namespace {
std::vector<int64_t> to_vector_i64(const torch::Tensor& t) {
  const auto c = t.to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}
}  // namespace

json judge_samples(const Expr& e, const AttributeSet& attrs, const Judges& j, const torch::Tensor& samples,
                   const torch::Tensor& real) {
  const Judgement s = judge(j, samples);
  const auto ok = satisfies(e, attrs, s);
  json rep{{"expr", e.str()}, {"n", samples.size(0)}, {"success_rate", ok.to(torch::kFloat64).mean().item<double>()}};
  std::vector<std::pair<std::string, bool>> atoms;
  e.atoms(atoms);
  json per = json::object();
  for (const auto& [a, positive] : atoms) {
    const auto sat = atom_satisfied(a, attrs, s).to(torch::kFloat64).mean().item<double>();
    // A negated term is satisfied when the atom is false.
    per[(positive ? "" : "!") + a] = positive ? sat : 1.0 - sat;
  }
  rep["per_term"] = per;
  if (s.digit.defined()) {
    rep["judge_confidence"] = s.confidence.mean().item<double>();
    rep["digit_histogram"] = to_vector_i64(torch::bincount(s.digit, {}, 10));
  }
  if (s.thick_class.defined()) {
    rep["thickness_histogram"] = to_vector_i64(torch::bincount(s.thick_class, {}, 3));
    rep["mean_thickness"] = s.thickness.mean().item<double>();
  }
  const double div = samples.size(0) >= 2 ? mean_pairwise_l2(samples) : std::nan("");
  json d{{"samples", div}, {"real", nullptr}, {"ratio", nullptr}, {"real_n", 0}};
  if (real.defined() && real.size(0) >= 2) {
    const auto rj = judge(j, real);
    const auto idx = satisfies(e, attrs, rj).nonzero().flatten();
    d["real_n"] = idx.size(0);
    if (idx.size(0) >= 2) {
      auto r = real.index_select(0, idx);
      if (r.size(0) > 1000) r = r.narrow(0, 0, 1000);
      const double rd = mean_pairwise_l2(r);
      d["real"] = rd;
      d["ratio"] = div / rd;
    }
  }
  rep["diversity"] = d;
  return rep;
}

}  // namespace ebm
