// shift.cpp: the graded shift families. See shift.h for each definition.
#include "ebm/ood/shift.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "format.h"

namespace ebm {

namespace {

// One row per family: its severity range and unit (shift.h's table).
struct FamilyInfo {
  const char* name;
  double max;
  const char* unit;
  const char* what;
};

const std::vector<FamilyInfo>& family_table() {
  static const std::vector<FamilyInfo> t{
      {"noise", 1.0, "sigma", "additive Gaussian noise, clipped to [0,1]"},
      {"blur", 3.0, "sigma px", "Gaussian blur"},
      {"rotate", 90.0, "degrees", "rotation, direction random per image"},
      {"contrast", 1.0, "c", "contrast reduction towards the image mean"},
      {"occlude", 20.0, "side px", "mid-grey square at a random place"},
      {"quantize", 7.0, "bits removed", "quantisation to max(2, round(2^(8-s))) grey levels"},
      {"mix", 1.0, "alpha", "convex mixture with another dataset's test images"},
  };
  return t;
}

const FamilyInfo& info(const std::string& family) {
  for (const auto& f : family_table())
    if (family == f.name) return f;
  TORCH_INTERNAL_ASSERT(false, "no shift family '", family, "'");
  return family_table().front();
}

std::string family_list() {
  std::string s;
  for (const auto& f : family_table()) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s + " (as mix:<dataset>)";
}

// Image i turns by +s or -s degrees about its centre; bilinear, black outside.
torch::Tensor rotate(const torch::Tensor& x, double degrees, at::Generator& gen) {
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
  const auto sign = torch::randint(2, {N}, gen, torch::kFloat64) * 2 - 1;
  const auto t = sign * (degrees * M_PI / 180.0);
  const auto c = torch::cos(t), s = torch::sin(t);
  // affine_grid works in coordinates normalised to [-1,1] per axis; these
  // entries are a rotation in pixel space for any aspect ratio.
  const double hw = double(H) / double(W), wh = double(W) / double(H);
  const auto z = torch::zeros({N}, torch::kFloat64);
  auto theta = torch::stack({torch::stack({c, -s * hw, z}, 1), torch::stack({s * wh, c, z}, 1)}, 1).to(x.scalar_type());
  namespace F = torch::nn::functional;
  const auto grid = F::affine_grid(theta, {N, x.size(1), H, W}, /*align_corners=*/false);
  return F::grid_sample(x, grid,
                        F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
}

// A mid-grey square of side round(s) per image. Each image's square sits at
// the centre of a max-size frame placed uniformly inside the image, so the
// squares of every severity are nested (shift.h).
torch::Tensor occlude(const torch::Tensor& x, double side, double max_side, at::Generator& gen) {
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3);
  const int64_t S = std::lround(max_side), k = std::lround(side);
  if (H < S || W < S)
    throw UsageError("occlude needs images of at least " + std::to_string(S) + "x" + std::to_string(S) + " pixels, got " +
                     std::to_string(H) + "x" + std::to_string(W));
  const auto top = torch::randint(H - S + 1, {N}, gen, torch::kInt64);
  const auto left = torch::randint(W - S + 1, {N}, gen, torch::kInt64);
  auto y = x.clone();
  if (k == 0) return y;
  const int64_t off = (S - k) / 2;  // nested: see the comment in shift.h's table
  auto acc_t = top.accessor<int64_t, 1>();
  auto acc_l = left.accessor<int64_t, 1>();
  for (int64_t i = 0; i < N; ++i)
    y[i].narrow(1, acc_t[i] + off, k).narrow(2, acc_l[i] + off, k).fill_(0.5);
  return y;
}

// Row i of the partner set mixed into image i: a seeded permutation (no
// repetition) when the partner has at least N images, else draws with replacement.
torch::Tensor pick_partner(const torch::Tensor& partner, int64_t N, at::Generator& gen) {
  const int64_t M = partner.size(0);
  const auto idx = M >= N ? torch::randperm(M, gen, torch::kInt64).narrow(0, 0, N)
                          : torch::randint(M, {N}, gen, torch::kInt64);
  return partner.index_select(0, idx);
}

}  // namespace

const std::vector<std::string>& shift_families() {
  static const std::vector<std::string> f = [] {
    std::vector<std::string> v;
    for (const auto& x : family_table()) v.push_back(x.name);
    return v;
  }();
  return f;
}

const std::vector<std::string>& default_shifts() {
  static const std::vector<std::string> d{"noise", "blur", "rotate", "contrast", "occlude", "quantize", "mix:letters"};
  return d;
}

Shift Shift::parse(const std::string& spec) {
  Shift s;
  s.spec = spec;
  const auto colon = spec.find(':');
  s.family = spec.substr(0, colon);
  if (s.family == "mix") {
    if (colon == std::string::npos || colon + 1 == spec.size())
      throw UsageError("shift 'mix' needs the dataset to mix in, e.g. mix:letters (got '" + spec + "')");
    s.partner = spec.substr(colon + 1);
  } else if (colon != std::string::npos ||
             std::find(shift_families().begin(), shift_families().end(), s.family) == shift_families().end()) {
    throw UsageError("unknown shift '" + spec + "' (families: " + family_list() + ")");
  }
  s.max_severity = info(s.family).max;
  s.unit = info(s.family).unit;
  return s;
}

std::string Shift::describe() const {
  const auto& f = info(family);
  std::string w = f.what;
  if (family == "mix") w = "convex mixture with " + partner + " test images";
  return spec + ": " + w + "; severity = " + unit + ", 0.." + fmt("%g", max_severity);
}

std::vector<double> Shift::levels(int64_t k) const {
  if (k < 2) throw UsageError("a severity curve needs at least 2 levels (0 and the maximum), got " + std::to_string(k));
  std::vector<double> v(k);
  for (int64_t i = 0; i < k; ++i) v[i] = max_severity * double(i) / double(k - 1);
  v.back() = max_severity;  // exact, whatever the rounding of i/(k-1)
  return v;
}

void Shift::load_partner(const std::string& root, int64_t n, uint64_t seed) {
  if (family != "mix") return;
  DatasetOptions d;
  d.split = "test";
  d.synthetic_n = n;
  d.seed = seed;
  d.root = root;
  partner_images = load_dataset(partner, d).images;
  if (partner_images.size(0) == 0) throw DataError("mix partner '" + partner + "' has no test images");
}

torch::Tensor Shift::apply(const torch::Tensor& x, double severity, uint64_t seed) const {
  TORCH_CHECK(x.dim() == 4, "Shift::apply: x must be [N,C,H,W], got ", x.sizes());
  if (!(severity >= 0 && severity <= max_severity))
    throw UsageError("shift '" + spec + "': severity " + fmt("%g", severity) + " is outside 0.." +
                     fmt("%g", max_severity) + " (" + unit + ")");
  torch::NoGradGuard ng;
  // Severity 0 is the clean image for every family, bit for bit (shift.h).
  if (severity == 0) return x.clone();
  auto gen = at::detail::createCPUGenerator(seed);
  const double s = severity;
  if (family == "noise") return (x + s * torch::randn(x.sizes(), gen, x.options())).clamp(0, 1);
  if (family == "blur") return gaussian_blur(x, s).clamp(0, 1);
  if (family == "rotate") return rotate(x, s, gen).clamp(0, 1);
  if (family == "contrast") return ((1 - s) * x + s * x.mean({2, 3}, /*keepdim=*/true)).clamp(0, 1);
  if (family == "occlude") return occlude(x, s, max_severity, gen);
  if (family == "quantize") {
    const double L = std::max(2.0, double(std::lround(std::pow(2.0, 8.0 - s))));
    return (x * (L - 1)).round().div(L - 1).clamp(0, 1);
  }
  if (family == "mix") {
    if (!partner_images.defined())
      throw UsageError("shift '" + spec + "' has no partner images; call load_partner() first");
    if (partner_images.dim() != 4 || !partner_images.sizes().slice(1).equals(x.sizes().slice(1)))
      throw UsageError("shift '" + spec + "': partner images " + c10::str(partner_images.sizes()) +
                       " do not match the images' [C,H,W] of " + c10::str(x.sizes()));
    const auto y = pick_partner(partner_images.to(x.scalar_type()), x.size(0), gen);
    return ((1 - s) * x + s * y).clamp(0, 1);
  }
  TORCH_INTERNAL_ASSERT(false, "shift family '", family, "' has no implementation");
  return x;
}

torch::Tensor gaussian_blur(const torch::Tensor& x, double sigma) {
  TORCH_CHECK(x.dim() == 4, "gaussian_blur: x must be [N,C,H,W], got ", x.sizes());
  if (!(sigma > 0)) throw UsageError("blur sigma must be > 0, got " + fmt("%g", sigma));
  const int64_t r = int64_t(std::ceil(3 * sigma));
  if (r >= std::min(x.size(2), x.size(3)))
    throw UsageError("blur sigma " + fmt("%g", sigma) + " needs a kernel radius of " + std::to_string(r) +
                     " px, too large for " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) + " images");
  auto t = torch::arange(-r, r + 1, torch::kFloat64);
  auto k = torch::exp(-t * t / (2 * sigma * sigma));
  k = (k / k.sum()).to(x.scalar_type());
  const int64_t C = x.size(1);
  auto kh = k.view({1, 1, 1, 2 * r + 1}).expand({C, 1, 1, 2 * r + 1}).contiguous();
  auto kv = k.view({1, 1, 2 * r + 1, 1}).expand({C, 1, 2 * r + 1, 1}).contiguous();
  namespace F = torch::nn::functional;
  auto y = F::pad(x, F::PadFuncOptions({r, r, r, r}).mode(torch::kReflect));
  y = F::conv2d(y, kh, F::Conv2dFuncOptions().groups(C));
  return F::conv2d(y, kv, F::Conv2dFuncOptions().groups(C));
}

}  // namespace ebm
