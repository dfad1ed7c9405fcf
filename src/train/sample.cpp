// sample.cpp: SampleOptions, the card's sampler, chain starts, judged samples.
#include "ebm/train/sample.h"

#include <torch/torch.h>

#include <cstdio>

#include "ebm/compose/attributes.h"
#include "ebm/core/common.h"
#include "ebm/core/compose.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"
#include "ebm/train/train.h"

namespace ebm {

using json = nlohmann::json;

ChainInit parse_chain_init(const std::string& s) {
  if (s == "uniform") return ChainInit::kUniform;
  if (s == "gaussian") return ChainInit::kGaussian;
  if (s == "gaussian-all") return ChainInit::kGaussianAll;
  throw UsageError("chain init '" + s + "' is not uniform, gaussian or gaussian-all");
}

std::string to_string(ChainInit init) {
  switch (init) {
    case ChainInit::kUniform: return "uniform";
    case ChainInit::kGaussian: return "gaussian";
    case ChainInit::kGaussianAll: return "gaussian-all";
  }
  return "uniform";
}

LangevinOptions tuned_sampler() { return LangevinOptions().steps(200).step_size(10.0).noise(0.005).grad_clip(0.03); }

json apply_card_sampler(const json& card, SampleOptions& o, const std::set<std::string>& given) {
  CardEntry s(card, "sampler", given);
  LangevinOptions& lo = o.langevin();
  take_chain_keys(s, lo);
  s.take<std::string>("init", [&](const std::string& v) { o.init(to_string(parse_chain_init(v))); });
  s.take<std::string>("method", [&](const std::string& v) {
    resolve_sampler(v, false);  // validates the name
    o.sampler(v);
  });
  take_annealed_keys(s, o.annealed());
  return s.applied();
}

torch::Tensor chain_starts(const SampleOptions& o, const json& card, at::Generator& gen) {
  const ChainInit init = parse_chain_init(o.init());
  if (init == ChainInit::kUniform) return torch::rand({o.n(), 1, 28, 28}, gen);
  const std::string name = o.data().empty() ? card.value("data", std::string()) : o.data();
  if (name.empty()) throw UsageError("init " + o.init() + " needs a dataset (the model card names no \"data\")");
  DatasetOptions fit_split;
  fit_split.split = "fit";
  const Dataset d = load_dataset(name, fit_split);
  if (init == ChainInit::kGaussianAll) return gaussian_starts(d.images, {})(o.n(), gen);
  if (o.cls() < 0) return gaussian_starts(d.images, d.labels)(o.n(), gen);
  // That class's Gaussian only (JEM++-style informative starts for E(x|y)).
  if (!d.labels.defined()) throw DataError("class-conditional Gaussian starts need a labelled dataset; '" + name + "' has none");
  const auto idx = (d.labels == o.cls()).nonzero().flatten();
  if (idx.numel() < 2) throw UsageError("class " + std::to_string(o.cls()) + " has fewer than 2 images in " + name + "/fit");
  return gaussian_starts(d.images.index_select(0, idx), {})(o.n(), gen);
}

json JudgedImages::to_json() const {
  json j{{"mean_confidence", mean_confidence}, {"class_histogram", histogram}};
  if (agreement >= 0) j["agreement"] = agreement;
  return j;
}

JudgedImages judge_images(Energy& classifier, const torch::Tensor& x, int64_t cls) {
  // Through the composition judges' classifier path: one softmax/argmax rule.
  Judges j;
  j.digit = std::shared_ptr<Energy>(&classifier, [](Energy*) {});
  const Judgement r = judge(j, x);
  JudgedImages out;
  const auto hist = torch::bincount(r.digit, {}, classifier.num_classes()).to(torch::kInt64).contiguous();
  out.histogram.assign(hist.data_ptr<int64_t>(), hist.data_ptr<int64_t>() + hist.numel());
  out.mean_confidence = r.confidence.mean().item<double>();
  if (cls >= 0) out.agreement = r.digit.eq(cls).to(torch::kFloat64).mean().item<double>();
  return out;
}

json SampleReport::to_json() const {
  const LangevinOptions& lo = options.langevin();
  json rep{{"model", model},         {"model_hash", model_hash}, {"n", options.n()},
           {"sampler", sampler},     {"seed", options.seed()},   {"init", options.init()},
           {"mean_energy", mean_energy}};
  if (sampler == "annealed") {
    const AnnealedOptions& a = options.annealed();
    rep.update({{"sigma_max", a.sigma_max()},
                {"sigma_min", a.sigma_min()},
                {"levels", a.levels()},
                {"steps_per_level", a.steps_per_level()},
                {"epsilon", a.epsilon()},
                {"corrector", a.corrector()},
                {"tweedie_end", a.tweedie_end()},
                {"sigmas", annealed.sigmas},
                {"acceptance", annealed.acceptance},
                {"acceptance_rate", annealed.acceptance_rate},
                {"energy_evaluations", annealed.energy_evaluations}});
  } else {
    rep.update({{"steps", lo.steps()},
                {"step_size", lo.step_size()},
                {"noise", lo.noise()},
                {"grad_clip", lo.grad_clip()},
                {"step_schedule", lo.step_schedule().str()},
                {"noise_schedule", lo.noise_schedule().str()}});
  }
  if (options.cls() >= 0) rep["class"] = options.cls();
  if (!sampler_from_card.empty()) rep["sampler_from_card"] = sampler_from_card;
  if (!judge.empty()) {
    rep["judge"] = judge;
    rep["judge_hash"] = judge_hash;
    rep["judged_starts"] = judged_starts.to_json();
    rep["judged_samples"] = judged_samples.to_json();
    rep.update(quality.to_json());
  }
  return rep;
}

std::string SampleReport::to_text() const {
  if (judge.empty()) return "";
  std::string s;
  char line[160];
  for (const auto* p : {&judged_starts, &judged_samples}) {
    std::snprintf(line, sizeof line, "%-15s judge confidence %.3f", p == &judged_starts ? "judged_starts" : "judged_samples",
                  p->mean_confidence);
    s += line;
    if (p->agreement >= 0) {
      std::snprintf(line, sizeof line, ", read as class %lld: %.3f", (long long)options.cls(), p->agreement);
      s += line;
    }
    s += "\n";
  }
  if (const std::string q = quality.to_text(); !q.empty()) s += "judged_samples  " + q + "\n";
  return s;
}

SampleReport sample(const std::string& model, SampleOptions o, const std::set<std::string>& given, const std::string& judge,
                    const std::function<void(int64_t, int64_t)>& on_step) {
  if (o.n() <= 0) throw UsageError("sample: n must be > 0, got " + std::to_string(o.n()));
  SampleReport rep;
  const json card = load_card(model);
  rep.sampler_from_card = apply_card_sampler(card, o, given);
  parse_chain_init(o.init());
  rep.model = model;
  rep.model_hash = model_hash(model);
  EnergyPtr e = load_model(model);
  EnergyPtr judge_model;
  if (!judge.empty()) {
    rep.judge = judge;
    rep.judge_hash = model_hash(judge);
    if (rep.judge_hash == rep.model_hash) throw UsageError("judge '" + judge + "' is the sampled model; a judge must be independent");
    judge_model = load_model(judge);
    if (judge_model->num_classes() <= 0) throw UsageError("judge '" + judge + "' is not a classifier");
    if (o.cls() >= judge_model->num_classes())
      throw UsageError("class " + std::to_string(o.cls()) + " is outside the judge's classes");
    QualityJudge::check(o.quality(), o.n());  // before sampling
  }
  if (o.cls() >= 0) {
    if (e->num_classes() <= 0) throw UsageError("class " + std::to_string(o.cls()) + " given, but '" + model + "' is not a classifier");
    if (o.cls() >= e->num_classes())
      throw UsageError("class " + std::to_string(o.cls()) + " is outside the model's " + std::to_string(e->num_classes()) + " classes");
    e = std::make_shared<ClassEnergy>(e, o.cls());
  }
  auto gen = at::detail::createCPUGenerator(o.seed());
  rep.starts = chain_starts(o, card, gen);
  rep.sampler = resolve_sampler(o.sampler(), e->noise_conditional());
  if (rep.sampler == "annealed") {
    const AnnealedOptions ao = AnnealedOptions(o.annealed()).seed(o.seed());  // annealed_langevin checks it
    const int64_t per = ao.steps_per_level();
    rep.annealed = annealed_langevin(*e, rep.starts, ao, &gen, [&](int64_t done, int64_t total) {
      if (on_step) on_step(done * per, total * per);
    });
    rep.x = rep.annealed.x.clamp(0, 1);  // images: the chain itself runs unclamped (annealed.h)
    rep.mean_energy = energy_batched(*e, rep.x).mean().item<double>();
  } else {
    const LangevinOptions lo = LangevinOptions(o.langevin()).seed(o.seed());
    auto r = langevin(*e, rep.starts, lo, {}, &gen, [&](const LangevinStep& s) {
      if (on_step) on_step(s.step + 1, s.total);
    });
    if (r.diverged) throw DivergenceError("sampling diverged at step " + std::to_string(r.steps_run) + "; lower the step size");
    rep.x = r.x;
    rep.mean_energy = r.energy.mean().item<double>();
  }
  rep.options = o;
  if (judge_model) {
    rep.judged_starts = judge_images(*judge_model, rep.starts, o.cls());
    rep.judged_samples = judge_images(*judge_model, rep.x, o.cls());
    if (o.quality().frechet() || o.quality().knn()) {
      // The dataset the samples imitate: --data, else the model's card, else the judge's.
      std::string data = o.data().empty() ? card.value("data", std::string()) : o.data();
      if (data.empty()) data = load_card(judge).value("data", std::string());
      if (data.empty()) {
        if (o.quality().frechet())
          rep.quality.frechet_real = {{"note", "no dataset to compare with: pass --data (neither card names one)"}};
      } else {
        const QualityJudge q(judge_model, judge, data, o.quality());
        RealAttributes a;
        a.label = o.cls();
        rep.quality = q.measure(rep.x, a, o.seed());
      }
    }
  }
  return rep;
}

}  // namespace ebm
