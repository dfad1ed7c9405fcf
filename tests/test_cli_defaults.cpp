// Every `ebm` flag that shows a default shows its library options struct's
// default: the CLI binds flags to those structs and declares none of its own.
// Each expected value is read from a default-constructed library struct, so
// a default re-declared in tools/ebm (or a new flag nobody listed) fails here.
#include <gtest/gtest.h>

#include <cmath>

#include "cli_defaults.h"
#include "ebm/compose/composer.h"
#include "ebm/core/energy.h"
#include "ebm/defend/defend.h"
#include "ebm/io/data.h"
#include "ebm/ood/ensemble.h"
#include "ebm/ood/ood.h"
#include "ebm/ood/shift_eval.h"
#include "ebm/restore/restore.h"
#include "ebm/serve/service.h"
#include "ebm/train/evaluate.h"
#include "ebm/train/sample.h"
#include "ebm/train/train.h"
#include "ebm/train/launch.h"

namespace ebm::test {
namespace {

std::string show(const Schedule& s) { return s.str(); }
std::string show(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s + "]";
}
std::string show(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}
using ebm::test::show;

// The quality flags (ebm sample, ebm compose eval), bound to `q`.
void add_quality(std::map<std::string, std::string>& m, const QualityOptions& q) {
  m["--frechet"] = show(q.frechet());
  m["--frechet-n"] = show(q.frechet_n());
  m["--frechet-draws"] = show(q.draws());
  m["--frechet-split"] = show(q.real_split());
  m["--knn"] = show(q.knn());
}

// The shared sampler's six flags, bound to `lo`.
void add_langevin(std::map<std::string, std::string>& m, const LangevinOptions& lo, const std::string& prefix = "") {
  m["--" + prefix + "steps"] = show(lo.steps());
  m["--" + prefix + "step-size"] = show(lo.step_size());
  m["--" + prefix + "noise"] = show(lo.noise());
  m["--" + prefix + "grad-clip"] = show(lo.grad_clip());
  m["--" + prefix + "step-schedule"] = show(lo.step_schedule());
  m["--" + prefix + "noise-schedule"] = show(lo.noise_schedule());
}

TEST(CliDefaults, DataExport) {
  const ExportOptions o;
  expect_flag_defaults({"data", "export"},
                       {{"--data", show(o.data)}, {"--split", show(o.split)}, {"--n", show(o.n)}, {"--noise", show(o.noise)}});
}

// The annealed sampler's flags and --sampler, bound to `a` and `method`.
void add_annealed(std::map<std::string, std::string>& m, const AnnealedOptions& a, const std::string& method) {
  m["--sampler"] = show(method);
  m["--sigma-max"] = show(a.sigma_max());
  m["--sigma-min"] = show(a.sigma_min());
  m["--levels"] = show(a.levels());
  m["--steps-per-level"] = show(a.steps_per_level());
  m["--epsilon"] = show(a.epsilon());
  m["--corrector"] = show(a.corrector());
}

TEST(CliDefaults, Sample) {
  const SampleOptions o;
  std::map<std::string, std::string> m{{"--n", show(o.n())}, {"--class", show(o.cls())}, {"--init", show(o.init())}};
  add_langevin(m, o.langevin());
  add_annealed(m, o.annealed(), o.sampler());
  add_quality(m, o.quality());
  expect_flag_defaults({"sample"}, m);
  EXPECT_EQ(o.annealed().levels(), image_annealed_sampler().levels());
  // The sampler `ebm sample` uses is the tuned one, not the primitive's defaults.
  EXPECT_EQ(o.langevin().steps(), tuned_sampler().steps());
  EXPECT_EQ(o.langevin().grad_clip(), tuned_sampler().grad_clip());
}

TEST(CliDefaults, Denoise) {
  const DenoiseOptions o;
  expect_flag_defaults({"denoise"}, {{"--solver", show(o.solver())},
                                     {"--sigma", show(o.sigma())},
                                     {"--schedule", show(o.schedule())},
                                     {"--steps", show(o.steps())},
                                     {"--step-size", show(o.step_size())},
                                     {"--data-weight", show(o.data_weight())},
                                     {"--noise", show(o.noise())}});
}

TEST(CliDefaults, Inpaint) {
  const InpaintOptions o;
  expect_flag_defaults({"inpaint"}, {{"--mask", show(o.mask())},
                                     {"--steps", show(o.steps())},
                                     {"--step-size", show(o.step_size())},
                                     {"--noise", show(o.noise())},
                                     {"--chains", show(o.chains())}});
}

TEST(CliDefaults, RestoreEval) {
  const RestoreEvalOptions o;
  const std::map<std::string, std::string> common{
      {"--data", show(o.data())}, {"--n", show(o.n())}, {"--split", show(o.split())}, {"--n-val", show(o.n_val())}};
  auto denoise = common;
  denoise["--sigma"] = show(o.sigma());
  expect_flag_defaults({"denoise", "eval"}, denoise);
  auto inpaint = common;
  inpaint.insert({{"--mask", show(o.mask())},
                  {"--chains", show(o.chains())},
                  {"--sigma-max", show(o.sigma_max())},
                  {"--sigma-min", show(o.sigma_min())},
                  {"--levels", show(o.levels())},
                  {"--repeats", show(o.repeats())}});
  expect_flag_defaults({"inpaint", "eval"}, inpaint);
}

TEST(CliDefaults, Train) {
  const TrainOptions o;
  expect_flag_defaults({"train"}, {{"--task", show(o.task())},
                                   {"--data", show(o.data())},
                                   {"--width", show(o.width())},
                                   {"--attribute", show(o.attribute())},
                                   {"--steps", show(o.steps())},
                                   {"--batch", show(o.batch())},
                                   {"--lr", show(o.lr())},
                                   {"--beta1", show(o.beta1())},
                                   {"--warmup", show(o.warmup())},
                                   {"--lr-schedule", show(o.lr_schedule())},
                                   {"--augment-shift", show(o.augment_shift())},
                                   {"--clip-grad-norm", show(o.clip_grad_norm())},
                                   {"--ema", show(o.ema())},
                                   {"--data-noise", show(o.data_noise())},
                                   {"--noise-augment", show(o.noise_augment())},
                                   {"--noise-augment-sigmas", show(o.noise_augment_sigmas())},
                                   {"--buffer-size", show(o.buffer_size())},
                                   {"--reinit", show(o.reinit())},
                                   {"--purify-fraction", show(o.purify_fraction())},
                                   {"--adv-eps", show(o.adv_eps())},
                                   {"--adv-fraction", show(o.adv_fraction())},
                                   {"--adv-steps", show(o.adv_steps())},
                                   {"--purify-attack-eps", show(o.purify_attack_eps())},
                                   {"--purify-attack-fraction", show(o.purify_attack_fraction())},
                                   {"--purify-attack-steps", show(o.purify_attack_steps())},
                                   {"--buffer-init", show(o.buffer_init())},
                                   {"--sgld-steps", show(o.sgld_steps())},
                                   {"--sgld-step", show(o.sgld_step())},
                                   {"--sgld-noise", show(o.sgld_noise())},
                                   {"--sgld-grad-clip", show(o.sgld_grad_clip())},
                                   {"--l2", show(o.l2())},
                                   {"--gen-weight", show(o.gen_weight())},
                                   {"--dsm-sigmas", show(o.dsm_sigmas())},
                                   // NaN in TrainOptions: the margin comes from data.
                                   {"--m-in", std::isnan(o.m_in()) ? "auto" : show(o.m_in())},
                                   {"--m-out", std::isnan(o.m_out()) ? "auto" : show(o.m_out())},
                                   {"--ft-weight", show(o.ft_weight())},
                                   {"--outliers", show(o.outliers())},
                                   {"--checkpoint-every", show(o.checkpoint_every())},
                                   {"--sample-every", show(o.sample_every())},
                                   {"--stop-after", show(o.stop_after())},
                                   {"--eval-n", show(o.eval_n())},
                                   {"--world-size", show(o.dist().world_size())},
                                   {"--rank", show(o.dist().rank())},
                                   {"--dist-timeout", show(o.dist().timeout())}});
}

TEST(CliDefaults, Launch) {
  const LaunchOptions o;
  expect_flag_defaults({"launch"}, {{"--nprocs", show(o.nprocs())}, {"--port", show(o.port())}, {"--grace", show(o.grace())}});
}

TEST(CliDefaults, Eval) {
  const ModelEvalOptions o;
  expect_flag_defaults({"eval"}, {{"--split", show(o.split)}, {"--n", show(o.n)}});
}

std::map<std::string, std::string> composer_flags(const ComposerOptions& f) {
  std::map<std::string, std::string> m{{"--attr-models", show(f.attr_models())},
                                       {"--prior", show(f.prior())},
                                       {"--prior-weight", show(f.compose().prior_weight())},
                                       {"--guidance", show(f.compose().guidance())},
                                       {"--guide-on", show(f.compose().guide_on())},
                                       {"--not-weight", show(f.compose().not_weight())},
                                       {"--or-temperature", show(f.compose().or_temperature())},
                                       {"--restarts", show(f.sample().restarts())},
                                       {"--select", show(f.select())},
                                       {"--batch", show(f.sample().batch())},
                                       {"--init", show(f.init())},
                                       {"--init-noise", show(f.sample().init_noise())}};
  add_langevin(m, f.sample().langevin());
  add_annealed(m, f.sample().annealed(), f.sample().sampler());
  return m;
}

TEST(CliDefaults, Compose) {
  const ComposerOptions f;
  auto m = composer_flags(f);
  m["--n"] = show(f.n());
  expect_flag_defaults({"compose"}, m);
  const ComposeEvalOptions e;
  auto me = composer_flags(f);
  me["--n"] = show(e.n());
  me["--judge"] = show(e.judge());
  add_quality(me, e.quality());
  expect_flag_defaults({"compose", "eval"}, me);
  expect_flag_defaults({"compose", "calibrate"}, {});
  // The tuned composition sampler, not the primitive's defaults.
  EXPECT_EQ(f.sample().langevin().step_size(), composition_sampler().step_size());
  EXPECT_EQ(f.sample().langevin().step_schedule().str(), "geometric:0.1");
}

TEST(CliDefaults, Ood) {
  const OodEvalOptions e;
  expect_flag_defaults({"ood", "eval"}, {{"--n-in", show(e.n_in())},
                                         {"--split", show(e.split())},
                                         {"--n-ood", show(e.n_ood())},
                                         {"--batch", show(e.batch())},
                                         {"--bootstrap", show(e.bootstrap())}});
  const CalibrateOptions c;
  expect_flag_defaults({"ood", "calibrate"},
                       {{"--percentile", show(c.percentile())}, {"--n", show(c.n())}, {"--batch", show(c.batch())}});
  expect_flag_defaults({"ood", "predict"}, {{"--batch", show(kScoringBatch)}});
  const EnsembleOptions en;
  expect_flag_defaults({"ood", "ensemble"}, {{"--split", show(en.split())},
                                             {"--n", show(en.n())},
                                             {"--batch", show(en.batch())},
                                             {"--default-score", show(en.default_score())}});
}

TEST(CliDefaults, OodShift) {
  const ShiftOptions o;
  expect_flag_defaults({"ood", "shift"}, {{"--shifts", show(o.shifts())},
                                          {"--levels", show(o.levels())},
                                          {"--n", show(o.n())},
                                          {"--batch", show(o.batch())}});
}

TEST(CliDefaults, Serve) {
  const serve::ServeOptions o;
  const serve::BatcherOptions b;
  expect_flag_defaults({"serve"}, {{"--host", show(o.host())},
                                   {"--port", show(o.port())},
                                   {"--workers", show(b.workers())},
                                   {"--max-batch", show(b.max_batch())},
                                   {"--max-delay-ms", show(b.max_delay_ms())},
                                   {"--queue-capacity", show(b.queue_capacity())},
                                   {"--http-threads", show(o.http_threads())},
                                   {"--max-connections", show(o.max_connections())},
                                   {"--keep-alive-ms", show(o.keep_alive_timeout_ms())},
                                   {"--request-timeout-ms", show(o.request_timeout_ms())},
                                   {"--max-body-bytes", show(o.max_body_bytes())},
                                   {"--max-images-per-request", show(o.max_images_per_request())},
                                   {"--timeout-ms", show(o.timeout_ms())},
                                   {"--max-steps", show(o.max_steps())}});
}

TEST(CliDefaults, DefendEval) {
  const DefendEvalOptions o;
  const PurifyOptions& p = o.purify();
  expect_flag_defaults({"defend", "eval"}, {{"--classifier", show(o.classifier())},
                                            {"--ebm", show(o.purifier())},
                                            {"--data", show(o.data())},
                                            {"--split", show(o.split())},
                                            {"--attack", show(o.attack())},
                                            {"--eps", show(o.eps())},
                                            {"--purify-steps", show(o.purify_steps())},
                                            {"--n", show(o.n())},
                                            {"--batch", show(o.batch())},
                                            {"--attack-steps", show(o.pgd().steps())},
                                            {"--attack-step-size", show(o.pgd().step_size())},
                                            {"--restarts", show(o.pgd().restarts())},
                                            {"--eot", show(o.eot())},
                                            {"--cw-confidence", show(o.cw().confidence())},
                                            {"--cw-c", show(o.cw().c())},
                                            {"--cw-search", show(o.cw().binary_search_steps())},
                                            {"--cw-steps", show(o.cw().steps())},
                                            {"--cw-lr", show(o.cw().lr())},
                                            {"--purify-step-size", show(p.step_size())},
                                            {"--purify-noise", show(p.noise())},
                                            {"--init-noise", show(p.init_noise())},
                                            {"--purify-step-schedule", show(p.step_schedule())},
                                            {"--purify-noise-schedule", show(p.noise_schedule())},
                                            {"--purify-grad-clip", show(p.grad_clip())},
                                            {"--draws", show(p.draws())},
                                            {"--sanity-n", show(o.sanity_n())},
                                            {"--sanity-steps", show(o.sanity_steps())},
                                            {"--sanity-tolerance", show(o.sanity_tolerance())}});
}

// The harness itself must be able to fail: a flag whose CLI default differs
// from the listed library value is reported.
TEST(CliDefaults, HarnessDetectsAMismatch) {
  EXPECT_FALSE(detail::same_default("200", "60"));
  EXPECT_FALSE(detail::same_default("[0.1,0.2]", "[0.1,0.3]"));
  EXPECT_TRUE(detail::same_default("0.10000000000000001", "0.1"));
  EXPECT_TRUE(detail::same_default("[0.1,0.2]", "[0.10000000000000001,0.20000000000000001]"));
}

}  // namespace
}  // namespace ebm::test
