// composer.cpp: Composer (sampling an expression as `ebm compose` does) and
// evaluate_composition (`ebm compose eval`).
#include "ebm/compose/composer.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "ebm/core/common.h"
#include "ebm/core/models.h"
#include "ebm/io/data.h"

namespace ebm {

using json = nlohmann::json;

namespace {
bool no_prior(const std::string& p) { return p.empty() || p == "none"; }
}  // namespace

namespace {

// The prior card's "compose" entry into o (keys in `given` stay); the keys taken.
json apply_card_compose(const json& card, ComposerOptions& o, const std::set<std::string>& given) {
  CardEntry s(card, "compose", given);
  ComposeOptions& c = o.compose();
  s.take<double>("guidance", [&](double v) { c.guidance(v); });
  s.take<double>("not_weight", [&](double v) { c.not_weight(v); });
  s.take<double>("or_temperature", [&](double v) { c.or_temperature(v); });
  s.take<double>("prior_weight", [&](double v) { c.prior_weight(v); });
  s.take<std::string>("guide_on", [&](const std::string& v) { c.guide_on(v); });
  s.take<int64_t>("restarts", [&](int64_t v) { o.sample().restarts(v); });
  s.take<std::string>("init", [&](const std::string& v) { o.init(v); });
  take_annealed_keys(s, o.sample().annealed());
  return s.applied();
}

}  // namespace

Composer::Composer(ComposerOptions o, const std::set<std::string>& given) : o_(std::move(o)) {
  if (!no_prior(o_.prior())) from_card_ = apply_card_compose(load_card(o_.prior()), o_, given);
  if (o_.select() != "expr" && o_.select() != "total")
    throw UsageError("select '" + o_.select() + "' is not expr or total");
  if (o_.init() != "data" && o_.init() != "uniform" && o_.init() != "auto")
    throw UsageError("init '" + o_.init() + "' is not auto, data or uniform");
  if (o_.attr_models().empty()) throw UsageError("composition needs at least one attribute model");
  attrs_ = AttributeSet(o_.attr_models());
  if (!no_prior(o_.prior())) prior_ = load_model(o_.prior());
  // Attribute models are classifiers (sigma-blind), so the prior alone decides
  // what "auto" means; every composed energy is noise-conditional iff it is.
  sampler_ = resolve_sampler(o_.sample().sampler(), prior_ && prior_->noise_conditional());
  init_ = o_.init() != "auto" ? o_.init() : sampler_ == "annealed" ? "uniform" : "data";
}

void Composer::resolve(const Expr& e) const { build_energy(e, attrs_, o_.compose(), nullptr); }

ComposeSamples Composer::sample(const Expr& e, int64_t n, uint64_t seed,
                                const std::function<void(int64_t, int64_t)>& on_step) const {
  const auto energy = build_energy(e, attrs_, o_.compose(), prior_);
  auto so = ComposeSampleOptions(o_.sample()).seed(seed).sampler(sampler_);
  if (o_.select() == "expr") so.select_energy(build_energy(e, attrs_, ComposeOptions(o_.compose()).guidance(1.0), nullptr));
  if (init_ == "data") {
    if (!pool_.defined()) {
      DatasetOptions d;
      d.split = "fit";  // only the split trainers see
      d.root = o_.root();
      pool_ = load_dataset(o_.init_data(), d).images;
    }
    so.init_pool(pool_);
  } else {
    so.init_pool(torch::Tensor());
  }
  return compose_sample(*energy, n, so, on_step);
}

json Composer::describe(uint64_t seed) const {
  json cal = json::object();
  for (const auto& m : attrs_.models())
    cal[m.name] = {{"model", m.path}, {"hash", model_hash(m.path)}, {"class_energy", m.nll ? "nll" : "logit"},
                   {"temperature", m.temperature}};
  const auto& c = o_.compose();
  const auto& s = o_.sample();
  const auto& lo = s.langevin();
  const auto& ao = s.annealed();
  const bool data = init_ == "data";
  const json sampler =
      sampler_ == "annealed"
          ? json{{"method", "annealed"},
                 {"sigma_max", ao.sigma_max()},
                 {"sigma_min", ao.sigma_min()},
                 {"levels", ao.levels()},
                 {"steps_per_level", ao.steps_per_level()},
                 {"epsilon", ao.epsilon()},
                 {"corrector", ao.corrector()},
                 {"tweedie_end", ao.tweedie_end()}}
          : json{{"method", "langevin"},
                 {"steps", lo.steps()},
                 {"step_size", lo.step_size()},
                 {"noise", lo.noise()},
                 {"grad_clip", lo.grad_clip()},
                 {"step_schedule", lo.step_schedule().str()},
                 {"noise_schedule", lo.noise_schedule().str()}};
  return {{"attr_models", cal},
          {"prior", no_prior(o_.prior()) ? "none" : o_.prior()},
          {"prior_hash", no_prior(o_.prior()) ? "" : model_hash(o_.prior())},
          {"prior_weight", c.prior_weight()},
          {"guidance", c.guidance()},
          {"guide_on", prior_ && prior_->noise_conditional() ? c.guide_on() : "noisy"},
          {"not_weight", c.not_weight()},
          {"or_temperature", c.or_temperature()},
          {"restarts", s.restarts()},
          {"select", o_.select()},
          {"init", data ? o_.init_data() + "/fit images + N(0, init_noise^2), clipped" : "uniform U(0,1)"},
          {"init_noise", data ? s.init_noise() : 0.0},
          {"sampler", sampler},
          {"from_prior_card", from_card_},
          {"seed", seed}};
}

std::vector<std::string> all_pairs_expressions() {
  std::vector<std::string> v;
  for (int d = 0; d < 10; ++d) v.push_back("digit=" + std::to_string(d));
  for (int d = 0; d < 10; ++d)
    for (const char* t : {"thin", "medium", "thick"}) v.push_back("digit=" + std::to_string(d) + " & thickness=" + t);
  return v;
}

Judges make_judges(const AttributeSet& attrs, const std::string& judge_path) {
  Judges j;
  const std::string judge_hash = model_hash(judge_path);
  for (const auto& m : attrs.models())
    if (model_hash(m.path) == judge_hash)
      throw UsageError("the judge '" + judge_path + "' is the generator '" + m.path + "'; a judge must be independent");
  j.digit = load_model(judge_path);
  j.digit_path = judge_path;
  if (const auto* t = attrs.find("thickness")) {
    try {
      const auto b = t->card.at("attribute").at("tercile_boundaries");
      j.thick_lo = b.at(0).get<double>(), j.thick_hi = b.at(1).get<double>();
    } catch (const json::exception& e) {
      throw DataError("thickness model '" + t->path + "': card has no attribute.tercile_boundaries [lo, hi]: " + e.what());
    }
    j.has_thickness = true;
  }
  return j;
}

bool has_and(const Expr& e) {
  if (e.kind == Expr::Kind::And) return true;
  for (const auto& k : e.kids)
    if (has_and(k)) return true;
  return false;
}

ComposeEvalReport evaluate_composition(const Composer& c, const std::vector<std::string>& exprs,
                                       const ComposeEvalOptions& o, uint64_t seed,
                                       const std::function<void(size_t, size_t)>& on_expr,
                                       const std::function<void(int64_t, int64_t)>& on_step) {
  if (exprs.empty()) throw UsageError("compose eval: no expressions");
  if (o.n() < 1) throw UsageError("compose eval: n must be >= 1, got " + std::to_string(o.n()));
  const Judges j = make_judges(c.attributes(), o.judge());
  std::vector<Expr> parsed;
  for (const auto& s : exprs) {
    parsed.push_back(parse_expr(s));
    c.resolve(parsed.back());  // every atom before any sampling
  }
  QualityJudge::check(o.quality(), o.n());  // before any sampling
  DatasetOptions dt;
  dt.split = "test";
  dt.root = c.options().root();
  const auto real = load_dataset(o.real_data(), dt).images;
  std::optional<std::pair<double, double>> terciles;
  if (j.has_thickness) terciles = std::make_pair(j.thick_lo, j.thick_hi);
  const QualityJudge quality(j.digit, o.judge(), o.real_data(), o.quality(), terciles, c.options().root());

  ComposeEvalReport rep;
  rep.n = o.n();
  rep.judge = o.judge();
  rep.judge_hash = model_hash(o.judge());
  rep.generation = c.describe(seed);
  rep.all_pairs = exprs == all_pairs_expressions();
  std::vector<torch::Tensor> grid_rows;
  double sum = 0;
  int cnt = 0;
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (on_expr) on_expr(i, parsed.size());
    const auto s = c.sample(parsed[i], o.n(), seed + i, on_step);
    json r = judge_samples(parsed[i], c.attributes(), j, s.x, real);
    r["expr"] = exprs[i];
    r["mean_energy"] = s.energy.mean().item<double>();
    rep.quality.push_back(quality.measure(s.x, fixed_attributes(parsed[i], c.attributes()), seed + i));
    r.update(rep.quality.back().to_json());
    if (has_and(parsed[i])) sum += r["success_rate"].get<double>(), ++cnt;
    rep.rows.push_back(r);
    if (o.keep_grid()) grid_rows.push_back(s.x.narrow(0, 0, std::min<int64_t>(10, o.n())));
  }
  if (cnt > 0) rep.mean_success_rate = sum / cnt;
  if (o.keep_grid()) rep.grid = torch::cat(grid_rows), rep.grid_cols = std::min<int64_t>(10, o.n());
  return rep;
}

json ComposeEvalReport::to_json() const {
  json out{{"n", n}, {"judge", judge}, {"judge_hash", judge_hash}, {"generation", generation}};
  if (rows.size() == 1) {
    out.update(rows[0]);
  } else {
    out["pairs"] = rows;
  }
  if (mean_success_rate && rows.size() > 1) out["mean_success_rate"] = *mean_success_rate;
  return out;
}

std::string ComposeEvalReport::to_text() const {
  std::string s;
  char line[256];
  if (all_pairs) {
    std::snprintf(line, sizeof line, "%-6s %8s %8s %8s %8s\n", "digit", "alone", "thin", "medium", "thick");
    s += line;
    for (int d = 0; d < 10; ++d) {
      std::snprintf(line, sizeof line, "%-6d %8.2f", d, rows[size_t(d)]["success_rate"].get<double>());
      s += line;
      for (int t = 0; t < 3; ++t) {
        std::snprintf(line, sizeof line, " %8.2f", rows[size_t(10 + 3 * d + t)]["success_rate"].get<double>());
        s += line;
      }
      s += "\n";
    }
    if (mean_success_rate) {
      std::snprintf(line, sizeof line, "mean success (pairs) %.3f\n", *mean_success_rate);
      s += line;
    }
    // The same table for each quality figure that was measured.
    auto table = [&](const char* title, auto get) {
      bool any = false;
      for (const auto& q : quality) any = any || get(q).has_value();
      if (!any) return;
      std::snprintf(line, sizeof line, "%s\n%-6s %8s %8s %8s %8s\n", title, "digit", "alone", "thin", "medium", "thick");
      s += line;
      for (int d = 0; d < 10; ++d) {
        std::snprintf(line, sizeof line, "%-6d", d);
        s += line;
        for (const size_t k : {size_t(d), size_t(10 + 3 * d), size_t(11 + 3 * d), size_t(12 + 3 * d)}) {
          const std::optional<double> v = k < quality.size() ? get(quality[k]) : std::optional<double>{};
          if (v) std::snprintf(line, sizeof line, " %8.2f", *v);
          else std::snprintf(line, sizeof line, " %8s", "-");
          s += line;
        }
        s += "\n";
      }
    };
    table("Frechet ratio (FD to real / real-vs-real FD, same n)", [](const QualityReport& q) { return q.frechet_ratio; });
    table("kNN agreement (second judge)", [](const QualityReport& q) { return q.knn_agreement; });
    return s;
  }
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "%-32s success %.3f  judge confidence %.3f  diversity ratio %s\n",
                  r["expr"].get<std::string>().c_str(), r["success_rate"].get<double>(),
                  r.value("judge_confidence", std::nan("")), r["diversity"]["ratio"].dump().c_str());
    s += line;
    const size_t i = size_t(&r - rows.data());
    if (i < quality.size() && !quality[i].to_text().empty()) s += "  " + quality[i].to_text() + "\n";
  }
  return s;
}

}  // namespace ebm
