// Restoration evaluation: EBM methods and tuned OpenCV baselines, side by side.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cmath>

#include "ebm/restore/baselines.h"
#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"
#include "ebm/metrics/image_metrics.h"
#include "ebm/core/models.h"
#include "ebm/io/progress.h"
#include "ebm/restore/restore.h"
#include "ebm/core/tweedie.h"

namespace ebm {

std::vector<std::string> ebm_denoise_methods() { return {"reference", "progressive", "map", "tweedie"}; }
std::vector<std::string> ebm_inpaint_methods() { return {"reference", "annealed", "tweedie"}; }

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Apply f to x in chunks: autograd memory grows with the batch.
template <typename F>
torch::Tensor chunked(const torch::Tensor& x, F f, int64_t chunk = 250) {
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < x.size(0); i += chunk) out.push_back(f(x.narrow(0, i, std::min(chunk, x.size(0) - i)), i));
  return torch::cat(out);
}

std::vector<std::string> selected(const std::vector<std::string>& all, const std::vector<std::string>& want) {
  if (want.empty()) return all;
  for (auto& w : want)
    if (std::find(all.begin(), all.end(), w) == all.end()) {
      std::string known;
      for (auto& a : all) known += (known.empty() ? "" : ", ") + a;
      throw UsageError("unknown EBM method '" + w + "' (known: " + known + ")");
    }
  return want;
}

struct Row {
  std::string name;
  torch::Tensor out;
  double seconds;
  nlohmann::json params = nlohmann::json::object();
};

std::vector<RestoreMethodResult> score_rows(const std::vector<Row>& rows, const torch::Tensor& clean,
                                           const torch::Tensor& missing) {
  std::vector<RestoreMethodResult> methods;
  for (auto& r : rows) {
    RestoreMethodResult m;
    m.name = r.name;
    m.psnr = psnr(r.out, clean).mean().item<double>();
    m.ssim = ssim(r.out, clean).mean().item<double>();
    m.seconds = r.seconds / double(clean.size(0));
    m.params = r.params;
    if (missing.defined()) m.psnr_masked = psnr_masked(r.out, clean, missing).mean().item<double>();
    methods.push_back(m);
  }
  return methods;
}

void write_grid(const std::string& path, const torch::Tensor& clean, const std::vector<Row>& rows) {
  if (path.empty()) return;
  const int64_t k = std::min<int64_t>(8, clean.size(0));
  std::vector<torch::Tensor> parts{clean.narrow(0, 0, k)};
  for (auto& r : rows) parts.push_back(r.out.narrow(0, 0, k));
  write_png_grid(path, torch::cat(parts), k);
}

// Tune baseline b's parameter on validation data by mean PSNR, then run it on
// the test images with the chosen value and record the row.
// run(param, on_val) -> restored images of the validation or the test set.
template <typename Run>
void add_tuned_baseline(std::vector<Row>& rows, const BaselineSpec& b, const torch::Tensor& clean_val, Run run) {
  double best = b.grid.front(), best_psnr = -1e9;
  for (double p : b.grid) {
    const torch::Tensor out = run(p, true);
    const double v = psnr(out, clean_val).mean().item<double>();
    if (v > best_psnr) best_psnr = v, best = p;
  }
  const double t0 = now_s();
  torch::Tensor out = run(best, false);
  rows.push_back({b.name, out, now_s() - t0, {{b.param, best}, {"val_psnr", best_psnr}, {"n_val", clean_val.size(0)}}});
}

}  // namespace

torch::Tensor ebm_denoise(Energy& e, const std::string& m, const torch::Tensor& y, double sigma, uint64_t seed) {
  if (m == "reference") return denoise(e, y, DenoiseOptions().seed(seed));
  if (m == "progressive") return denoise(e, y, DenoiseOptions().schedule("progressive").seed(seed));
  if (!(sigma > 0)) throw UsageError("method ebm-" + m + " needs the noise level: pass --sigma > 0");
  if (m == "map")
    return denoise(e, y, DenoiseOptions().steps(50).step_size(0.3 * sigma * sigma).data_weight(0.5 / (sigma * sigma)).seed(seed));
  if (m == "tweedie") return tweedie_step(e, y, sigma);
  throw UsageError("unknown EBM denoise method '" + m + "'");
}

std::string default_restore_model(const std::string& data) {
  return data == "mnist" ? "models/mnist-dsm-wide" : "models/fmnist-dsm";
}

std::string denoise_solver(const DenoiseOptions& o) {
  const std::string& s = o.solver();
  // NaN would otherwise read as "no sigma" (auto picks gd) or poison every pixel.
  if (!(o.sigma() >= 0 && std::isfinite(o.sigma())))
    throw UsageError("sigma must be a finite number >= 0, got " + std::to_string(o.sigma()));
  if (!(o.data_weight() >= 0 && std::isfinite(o.data_weight())))
    throw UsageError("data weight must be a finite number >= 0, got " + std::to_string(o.data_weight()));
  if (s == "auto") return o.sigma() > 0 ? "tweedie" : "gd";
  if (s == "gd") return s;
  if (s == "tweedie" || s == "map") {
    if (!(o.sigma() > 0)) throw UsageError("solver " + s + " needs the noise level sigma > 0");
    return s;
  }
  throw UsageError("unknown denoising solver '" + s + "' (use auto, gd, tweedie or map)");
}

torch::Tensor denoise_solve(Energy& e, const torch::Tensor& y, const DenoiseOptions& o) {
  const std::string s = denoise_solver(o);
  return s == "gd" ? denoise(e, y, o) : ebm_denoise(e, s, y, o.sigma(), o.seed());
}

double card_sigma_max(const Energy& e, double fallback) {
  const auto it = e.card().find("options");
  if (it == e.card().end() || !it->is_object() || !it->contains("dsm_sigmas")) return fallback;
  double mx = 0;
  for (const auto& s : (*it)["dsm_sigmas"]) mx = std::max(mx, s.get<double>());
  return mx > 0 ? mx : fallback;
}

namespace {

// Iterated Tweedie denoising with the known pixels re-imposed after every step
// (a projection method in the spirit of RePaint / DDRM, on a noise-unconditional
// DSM energy): noise the current estimate at sigma_t, denoise it with one
// Tweedie step x - sigma_t^2 grad E, paste the known pixels back; sigma_t
// geometric sigma_max -> sigma_min over `levels` levels (default 30), `repeats`
// steps each (default 3); see tweedie.h. The missing pixels start at the mean
// of the known ones. Each chain is one posterior sample; their mean estimates
// the posterior mean, which is what PSNR rewards (so the chains are averaged,
// not selected).
//
// The chains of all images run as one batch (rows chain-major: row c*B + i is
// chain c of image i), cut into blocks of whole images so that no pass holds
// more than kMaxRows rows: one pass over k*B rows costs far less than k passes
// over B (per-pass overheads, small-batch convolution kernels). With one block
// the result equals the chains run one after another on the same noise
// (RestoreEval.TweedieInpaintBatchedChainsEqualOneByOne).
constexpr int64_t kMaxRows = 512;

torch::Tensor tweedie_inpaint(Energy& e, const torch::Tensor& image, const torch::Tensor& known, int64_t chains,
                              uint64_t seed, double s_max, double s_min, int64_t levels, int64_t repeats) {
  const auto o = TweedieOptions().sigma_max(s_max).sigma_min(s_min).levels(levels).repeats(repeats);
  check_tweedie_options(o);
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t k = std::max<int64_t>(1, chains), n = image.size(0);
  const auto kn = (known != 0).expand_as(image);
  const auto kf = kn.to(image.scalar_type());
  // Unknown pixels start at the mean of the known ones.
  const auto fill = (image * kf).sum({1, 2, 3}, true) / kf.sum({1, 2, 3}, true).clamp_min(1);
  const auto x0 = torch::where(kn, image, fill.expand_as(image));
  const int64_t block = std::max<int64_t>(1, kMaxRows / k);  // images per pass
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < n; i += block) {
    const int64_t b = std::min(block, n - i);
    const auto xb = x0.narrow(0, i, b), kb = kn.narrow(0, i, b);
    const auto all = tweedie_sample(e, xb.repeat({k, 1, 1, 1}), o, gen, kb.repeat({k, 1, 1, 1}));
    out.push_back(all.view({k, b, image.size(1), image.size(2), image.size(3)}).mean(0));
  }
  return torch::where(kn, image, torch::cat(out));
}

}  // namespace

torch::Tensor ebm_inpaint(Energy& e, const std::string& m, const torch::Tensor& image, const torch::Tensor& known,
                          int64_t chains, uint64_t seed, double sigma_max, double sigma_min, int64_t levels,
                          int64_t repeats) {
  if (m == "reference") return inpaint(e, image, known, InpaintOptions().chains(chains).seed(seed));
  if (m == "tweedie") return tweedie_inpaint(e, image, known, chains, seed, sigma_max, sigma_min, levels, repeats);
  if (m != "annealed") throw UsageError("unknown EBM inpaint method '" + m + "'");
  // Annealed Langevin (Song & Ermon 2019) through the shared sampler: step
  // alpha*sigma_t^2 and noise sqrt(2*alpha)*sigma_t with sigma_t geometric from
  // s_max to s_min; known pixels frozen. Then a Tweedie step at s_min.
  const double s_max = 0.5, s_min = 0.03, alpha = 0.3;
  const double ratio = s_min / s_max;
  auto x = inpaint(e, image, known,
                   InpaintOptions()
                       .steps(200)
                       .step_size(alpha * s_max * s_max)
                       .noise(std::sqrt(2 * alpha) * s_max)
                       .step_schedule(Schedule{Schedule::kGeometric, ratio * ratio})
                       .noise_schedule(Schedule{Schedule::kGeometric, ratio})
                       .chains(chains)
                       .seed(seed));
  auto k = (known != 0).expand_as(x);
  return torch::where(k, image, tweedie_step(e, x, s_min));
}

RestoreReport denoise_eval(Energy& e, const RestoreEvalOptions& o) {
  if (!(o.sigma() > 0)) throw UsageError("--sigma must be > 0, got " + std::to_string(o.sigma()));
  DatasetOptions dt, dv;
  dt.split = check_eval_split(o.split()), dt.n = o.n();
  dv.split = "val", dv.n = o.n_val();
  auto clean = load_dataset(o.data(), dt).images;
  auto gen = at::detail::createCPUGenerator(o.seed());
  auto noisy = (clean + o.sigma() * torch::randn(clean.sizes(), gen)).clamp(0, 1);
  std::vector<Row> rows{{"noisy", noisy, 0.0}};
  const auto methods = selected(ebm_denoise_methods(), o.methods());
  // Progress in images (each method and baseline counts n), updated per chunk.
  const int64_t n = clean.size(0);
  Progress bar("denoise eval", n * int64_t(methods.size() + (o.baselines() ? denoise_baselines().size() : 0)));
  int64_t done = 0;
  for (auto& m : methods) {
    double t0 = now_s();
    auto out = chunked(noisy, [&](const torch::Tensor& y, int64_t i) {
      auto r = ebm_denoise(e, m, y, o.sigma(), o.seed() + i);
      bar.update(done + i + y.size(0), "ebm-" + m);
      return r;
    });
    rows.push_back({"ebm-" + m, out, now_s() - t0});
    bar.update(done += n, "ebm-" + m);
  }
  if (o.baselines()) {
    auto clean_val = load_dataset(o.data(), dv).images;
    auto gv = at::detail::createCPUGenerator(o.seed() + 1);
    auto noisy_val = (clean_val + o.sigma() * torch::randn(clean_val.sizes(), gv)).clamp(0, 1);
    for (auto& b : denoise_baselines()) {
      add_tuned_baseline(rows, b, clean_val,
                         [&](double p, bool val) { return opencv_denoise(b.name, val ? noisy_val : noisy, p); });
      bar.update(done += n, b.name);
    }
  }
  bar.finish();
  write_grid(o.grid(), clean, rows);
  RestoreReport rep;
  rep.kind = "denoise", rep.data = o.data(), rep.split = o.split(), rep.sigma = o.sigma();
  rep.n = clean.size(0), rep.seed = o.seed(), rep.methods = score_rows(rows, clean, {});
  rep.note = "noisy = clean + N(0, sigma^2), clipped to [0,1]; baselines tuned on the val split by mean PSNR";
  return rep;
}

RestoreReport inpaint_eval(Energy& e, const RestoreEvalOptions& o) {
  DatasetOptions dt, dv;
  dt.split = check_eval_split(o.split()), dt.n = o.n();
  dv.split = "val", dv.n = o.n_val();
  auto clean = load_dataset(o.data(), dt).images;
  auto known = make_mask(o.mask(), clean.size(0), clean.size(2), clean.size(3), o.seed());
  auto missing = (known == 0);
  auto masked = clean * known;
  std::vector<Row> rows{{"masked", masked, 0.0}};
  const auto methods = selected(ebm_inpaint_methods(), o.methods());
  const double sigma_max = o.sigma_max() > 0 ? o.sigma_max() : card_sigma_max(e);
  // Progress in images (each method and baseline counts n), updated per chunk.
  const int64_t n = clean.size(0);
  Progress bar("inpaint eval", n * int64_t(methods.size() + (o.baselines() ? inpaint_baselines().size() : 0)));
  int64_t done = 0;
  for (auto& m : methods) {
    double t0 = now_s();
    auto out = chunked(clean, [&](const torch::Tensor& x, int64_t i) {
      auto r = ebm_inpaint(e, m, x, known.narrow(0, i, x.size(0)), o.chains(), o.seed() + i, sigma_max,
                           o.sigma_min(), o.levels(), o.repeats());
      bar.update(done + i + x.size(0), "ebm-" + m);
      return r;
    });
    json params{{"chains", o.chains()}};
    if (m == "tweedie")
      params["sigma_max"] = sigma_max, params["sigma_min"] = o.sigma_min(), params["levels"] = o.levels(),
      params["repeats"] = o.repeats();
    rows.push_back({"ebm-" + m, out, now_s() - t0, params});
    bar.update(done += n, "ebm-" + m);
  }
  if (o.baselines()) {
    auto clean_val = load_dataset(o.data(), dv).images;
    auto known_val = make_mask(o.mask(), clean_val.size(0), clean_val.size(2), clean_val.size(3), o.seed() + 1);
    for (auto& b : inpaint_baselines()) {
      add_tuned_baseline(rows, b, clean_val, [&](double p, bool val) {
        return val ? opencv_inpaint(b.name, clean_val, known_val, p) : opencv_inpaint(b.name, clean, known, p);
      });
      bar.update(done += n, b.name);
    }
  }
  bar.finish();
  write_grid(o.grid(), clean, rows);
  RestoreReport rep;
  rep.kind = "inpaint", rep.data = o.data(), rep.split = o.split(), rep.mask = o.mask();
  rep.n = clean.size(0), rep.seed = o.seed(), rep.methods = score_rows(rows, clean, missing);
  rep.note = "psnr_masked is over the missing pixels only; baselines tuned on the val split by mean PSNR";
  return rep;
}

// ---------------------------------------------------------------- report writers

nlohmann::json RestoreReport::to_json() const {
  nlohmann::json ms = nlohmann::json::array();
  for (const auto& m : methods) {
    nlohmann::json j{{"name", m.name}, {"psnr", m.psnr}, {"ssim", m.ssim}, {"seconds", m.seconds}, {"params", m.params}};
    if (!std::isnan(m.psnr_masked)) j["psnr_masked"] = m.psnr_masked;
    ms.push_back(j);
  }
  nlohmann::json j{{"data", data}, {"split", split}, {"n", n}, {"seed", seed}, {"methods", ms}, {"note", note}};
  if (kind == "denoise") {
    j["sigma"] = sigma;
    j["clipped"] = true;
  } else {
    j["mask"] = mask;
  }
  return j;
}

namespace {
std::string restore_heading(const RestoreReport& r) {
  char b[256];
  std::snprintf(b, sizeof b, "%s on %s %s, n = %lld, %s", r.kind == "inpaint" ? "inpainting" : "denoising",
                r.data.c_str(), r.split.c_str(), (long long)r.n,
                r.kind == "inpaint" ? ("mask " + r.mask).c_str() : ("sigma " + std::to_string(r.sigma).substr(0, 5) + " (clipped)").c_str());
  return b;
}
}  // namespace

std::string RestoreReport::to_text() const {
  const bool inp = kind == "inpaint";
  std::string s = restore_heading(*this) + "\n";
  char b[512];
  std::snprintf(b, sizeof b, "%-18s %8s %8s %8s %10s  %s\n", "method", "psnr", inp ? "psnr_m" : "", "ssim", "s/image", "params");
  s += b;
  for (const auto& m : methods) {
    char pm[32] = "";
    if (inp) std::snprintf(pm, sizeof pm, "%.2f", m.psnr_masked);
    std::snprintf(b, sizeof b, "%-18s %8.2f %8s %8.4f %10.5f  %s\n", m.name.c_str(), m.psnr, pm, m.ssim, m.seconds,
                  m.params.dump().c_str());
    s += b;
  }
  return s;
}

std::string RestoreReport::to_markdown() const {
  const bool inp = kind == "inpaint";
  std::string s = restore_heading(*this) + ".\n\n";
  s += inp ? "| method | PSNR (dB) | PSNR missing (dB) | SSIM | s/image |\n|---|---:|---:|---:|---:|\n"
           : "| method | PSNR (dB) | SSIM | s/image |\n|---|---:|---:|---:|\n";
  char b[256];
  for (const auto& m : methods) {
    if (inp)
      std::snprintf(b, sizeof b, "| %s | %.2f | %.2f | %.4f | %.5f |\n", m.name.c_str(), m.psnr, m.psnr_masked, m.ssim, m.seconds);
    else
      std::snprintf(b, sizeof b, "| %s | %.2f | %.4f | %.5f |\n", m.name.c_str(), m.psnr, m.ssim, m.seconds);
    s += b;
  }
  return s;
}

}  // namespace ebm
