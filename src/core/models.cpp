#include "ebm/core/models.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/ensemble.h"
#include "ebm/core/fs.h"

#include <map>
#include <mutex>

namespace nn = torch::nn;

namespace ebm {
namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad));
}


// A LibTorch error as one short line. TorchScript interpreter errors end with
// their cause ("RuntimeError: ...") after a traceback; other errors start with it.
// (Errors raised inside TorchScript code are torch::jit::JITException, which is
// a std::runtime_error, not a c10::Error.)
std::string torch_message(const std::exception& e, size_t max_len = 300) {
  const auto* c10e = dynamic_cast<const c10::Error*>(&e);
  const std::string m = c10e ? c10e->what_without_backtrace() : e.what();
  std::vector<std::string> lines;
  std::istringstream in(m);
  for (std::string l; std::getline(in, l);) {
    const auto b = l.find_first_not_of(" \t\r"), end = l.find_last_not_of(" \t\r");
    if (b != std::string::npos) lines.push_back(l.substr(b, end - b + 1));
  }
  if (lines.empty()) return "unknown LibTorch error";
  std::string s = m.find("Traceback of TorchScript") != std::string::npos ? lines.back() : lines.front();
  return s.size() > max_len ? s.substr(0, max_len) + "..." : s;
}

void check_input(const torch::Tensor& x, int64_t channels, const char* who, int64_t size = 28) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == channels && x.size(2) == size && x.size(3) == size, who,
              " expects x [B,", channels, ",", size, ",", size, "], got ", x.sizes());
}

}  // namespace

// ---------------------------------------------------------------- ConvEBM
ConvEBMImpl::ConvEBMImpl(const ConvEBMOptions& o) : options(o) {
  const int64_t w = o.width();
  TORCH_CHECK(w > 0 && o.channels() > 0, "ConvEBM: width and channels must be > 0");
  TORCH_CHECK(o.image_size() >= 8 && o.image_size() % 4 == 0, "ConvEBM: image_size must be a multiple of 4 and >= 8, got ",
              o.image_size());
  const int64_t s = (o.image_size() / 4 + 1) / 2;  // the last stride-2 layer: ceil(S/8)
  body = register_module("body", nn::Sequential(conv(o.channels(), w, 3, 1, 1), nn::SiLU(),    // S (28)
                                                conv(w, 2 * w, 4, 2, 1), nn::SiLU(),           // S/2 (14)
                                                conv(2 * w, 4 * w, 4, 2, 1), nn::SiLU(),       // S/4 (7)
                                                conv(4 * w, 4 * w, 3, 2, 1), nn::SiLU(),       // s (4)
                                                nn::Flatten(), nn::Linear(s * s * 4 * w, 4 * w),
                                                nn::SiLU()));
  head = register_module("head", nn::Linear(4 * w, 1));
}

torch::Tensor ConvEBMImpl::forward(const torch::Tensor& x) {
  check_input(x, options.channels(), "ConvEBM", options.image_size());
  return head->forward(body->forward(x * 2 - 1)).squeeze(1);
}

// ---------------------------------------------------------------- NoiseConditionalEBM
namespace {
// The sigma plane both noise-conditional architectures read, in the [0, 1]
// convention of their image input: 1 + log(sigma)/log(100).
// Checks that sigma is [B] for x [B,...] (`who` names the architecture).
torch::Tensor sigma_plane(const torch::Tensor& x, const torch::Tensor& sigma, const char* who) {
  TORCH_CHECK(sigma.dim() == 1 && sigma.size(0) == x.size(0), who, " expects sigma [B] with B = ", x.size(0), ", got ",
              sigma.sizes());
  return (1.0 + sigma.to(x.dtype()).log() / std::log(100.0)).view({-1, 1, 1, 1}).expand({x.size(0), 1, 28, 28});
}
}  // namespace

NoiseConditionalEBMImpl::NoiseConditionalEBMImpl(const NoiseConditionalEBMOptions& o) : options(o) {
  TORCH_CHECK(o.width() > 0 && o.channels() > 0, "NoiseConditionalEBM: width and channels must be > 0");
  net = register_module("net", ConvEBM(ConvEBMOptions().channels(o.channels() + 1).width(o.width())));
}

torch::Tensor NoiseConditionalEBMImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma) {
  check_input(x, options.channels(), "NoiseConditionalEBM");
  // ConvEBM maps its input v to 2v - 1, so the plane spans [-1, 1] over sigma in [0.01, 1].
  const auto plane = sigma_plane(x, sigma, "NoiseConditionalEBM");
  return net->forward(torch::cat({x, plane}, 1)) / sigma.to(x.dtype());
}

// ---------------------------------------------------------------- UNetEnergy
UNetEnergyImpl::UNetEnergyImpl(const NoiseConditionalEBMOptions& o) : options(o) {
  const int64_t w = o.width(), c = o.channels();
  TORCH_CHECK(w > 0 && c > 0, "UNetEnergy: width and channels must be > 0");
  in1 = register_module("in1", nn::Sequential(conv(c + 1, w, 3, 1, 1), nn::SiLU(), conv(w, w, 3, 1, 1), nn::SiLU()));
  down1 = register_module("down1", nn::Sequential(conv(w, 2 * w, 4, 2, 1), nn::SiLU(), conv(2 * w, 2 * w, 3, 1, 1), nn::SiLU()));
  down2 = register_module("down2", nn::Sequential(conv(2 * w, 2 * w, 4, 2, 1), nn::SiLU(), conv(2 * w, 2 * w, 3, 1, 1), nn::SiLU()));
  up2 = register_module("up2", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(2 * w, 2 * w, 4).stride(2).padding(1)));
  mid2 = register_module("mid2", nn::Sequential(nn::SiLU(), conv(4 * w, 2 * w, 3, 1, 1), nn::SiLU()));
  up1 = register_module("up1", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(2 * w, w, 4).stride(2).padding(1)));
  mid1 = register_module("mid1", nn::Sequential(nn::SiLU(), conv(2 * w, w, 3, 1, 1), nn::SiLU()));
  out = register_module("out", conv(w, c, 3, 1, 1));
}

torch::Tensor UNetEnergyImpl::denoise(const torch::Tensor& x, const torch::Tensor& sigma) {
  check_input(x, options.channels(), "UNetEnergy");
  const auto h1 = in1->forward(torch::cat({x * 2 - 1, sigma_plane(x, sigma, "UNetEnergy") * 2 - 1}, 1));  // [B,w,28,28]
  const auto h2 = down1->forward(h1);                                                       // [B,2w,14,14]
  const auto h3 = down2->forward(h2);                                                       // [B,2w,7,7]
  const auto u2 = mid2->forward(torch::cat({up2->forward(h3), h2}, 1));                     // [B,2w,14,14]
  const auto u1 = mid1->forward(torch::cat({up1->forward(u2), h1}, 1));                     // [B,w,28,28]
  return (out->forward(u1) + 1) / 2;                                                        // [B,C,28,28]
}

torch::Tensor UNetEnergyImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma) {
  const auto s2 = sigma.to(x.dtype()).pow(2);
  return (x - denoise(x, sigma)).pow(2).flatten(1).sum(1) / (2 * s2);
}

// ---------------------------------------------------------------- ConvClassifier
ConvClassifierImpl::ConvClassifierImpl(const ConvClassifierOptions& o) : options(o) {
  const int64_t w = o.width();
  TORCH_CHECK(w > 0 && o.num_classes() > 1, "ConvClassifier: width must be > 0 and num_classes > 1");
  auto act = [&]() -> nn::AnyModule {
    if (o.activation() == "silu") return nn::AnyModule(nn::SiLU());
    if (o.activation() == "leaky_relu") return nn::AnyModule(nn::LeakyReLU(nn::LeakyReLUOptions().negative_slope(0.2)));
    throw UsageError("unknown activation '" + o.activation() + "' (use silu or leaky_relu)");
  };
  nn::Sequential s;
  s->push_back(conv(o.channels(), w, 3, 1, 1)); s->push_back(act());          // 28
  s->push_back(conv(w, 2 * w, 4, 2, 1)); s->push_back(act());                 // 14
  s->push_back(conv(2 * w, 2 * w, 3, 1, 1)); s->push_back(act());             // 14
  s->push_back(conv(2 * w, 4 * w, 4, 2, 1)); s->push_back(act());             // 7
  s->push_back(conv(4 * w, 4 * w, 3, 1, 1)); s->push_back(act());             // 7
  s->push_back(nn::AdaptiveAvgPool2d(1)); s->push_back(nn::Flatten());
  if (o.dropout() > 0) s->push_back(nn::Dropout(o.dropout()));
  body = register_module("body", s);
  head = register_module("head", nn::Linear(4 * w, o.num_classes()));
}

torch::Tensor ConvClassifierImpl::forward(const torch::Tensor& x) { return head->forward(features(x)); }

torch::Tensor ConvClassifierImpl::features(const torch::Tensor& x) {
  check_input(x, options.channels(), "ConvClassifier");
  return body->forward(x * 2 - 1);
}

// ---------------------------------------------------------------- NativeModel
// An integer field of an architecture description, within [lo, hi]. Read
// without conversion: a width of 1e30 would overflow int64_t, and a width of
// 10^6 would allocate terabytes before any weights file is compared.
static int64_t arch_int(const json& arch, const char* key, int64_t dflt, int64_t lo, int64_t hi) {
  if (!arch.contains(key)) return dflt;
  const json& v = arch[key];
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)) ||
      v.get<int64_t>() < lo || v.get<int64_t>() > hi)
    throw DataError("architecture \"" + std::string(key) + "\" must be an integer in " + std::to_string(lo) + ".." +
                    std::to_string(hi) + ", got " + v.dump().substr(0, 40));
  return v.get<int64_t>();
}

NativeModel::NativeModel(const json& arch) : arch_(arch) {
  if (!arch.is_object()) throw DataError("architecture must be a JSON object, got " + arch.dump().substr(0, 40));
  if (arch.contains("type") && !arch["type"].is_string())
    throw DataError("architecture \"type\" must be a string, got " + arch["type"].dump().substr(0, 40));
  const std::string type = arch.value("type", "");
  // Limits far above any model a CPU trains on 28x28 images (the shipped ones have width 24-32).
  const int64_t ch = arch_int(arch, "channels", 1, 1, 4), width = arch_int(arch, "width", 32, 1, 512);
  if (type == "conv-ebm") {
    const int64_t size = arch_int(arch, "image_size", 28, 8, 512);
    if (size % 4) throw DataError("architecture \"image_size\" must be a multiple of 4, got " + std::to_string(size));
    ConvEBM m(ConvEBMOptions().channels(ch).width(width).image_size(size));
    module_ = m.ptr();
    forward_ = [m](const torch::Tensor& x) mutable { return m->forward(x); };
  } else if (type == "conv-ebm-nc" || type == "unet-ebm-nc") {
    if (arch.contains("sigma_min") && !arch["sigma_min"].is_number())
      throw DataError("architecture \"sigma_min\" must be a number, got " + arch["sigma_min"].dump().substr(0, 40));
    const double sigma_min = arch.value("sigma_min", 0.01);
    if (!(sigma_min > 0 && sigma_min < 100))
      throw DataError("architecture \"sigma_min\" must be a number in (0, 100), got " + std::to_string(sigma_min));
    const auto o = NoiseConditionalEBMOptions().channels(ch).width(width);
    if (type == "conv-ebm-nc") {
      NoiseConditionalEBM m(o);
      module_ = m.ptr();
      forward_sigma_ = [m](const torch::Tensor& x, const torch::Tensor& s) mutable { return m->forward(x, s); };
    } else {
      UNetEnergy m(o);
      module_ = m.ptr();
      forward_sigma_ = [m](const torch::Tensor& x, const torch::Tensor& s) mutable { return m->forward(x, s); };
    }
    forward_ = [f = forward_sigma_, sigma_min](const torch::Tensor& x) {
      return f(x, torch::full({x.size(0)}, sigma_min, x.options()));
    };
  } else if (type == "conv-classifier") {
    num_classes_ = arch_int(arch, "num_classes", 10, 2, 10000);
    if ((arch.contains("activation") && !arch["activation"].is_string()) ||
        (arch.contains("dropout") && !(arch["dropout"].is_number() && arch["dropout"].get<double>() >= 0 &&
                                       arch["dropout"].get<double>() < 1)))
      throw DataError("architecture \"activation\" must be a string and \"dropout\" a number in [0,1)");
    ConvClassifier m(ConvClassifierOptions()
                         .channels(ch)
                         .width(width)
                         .num_classes(num_classes_)
                         .activation(arch.value("activation", "silu"))
                         .dropout(arch.value("dropout", 0.0)));
    module_ = m.ptr();
    classifier_ = m;
    forward_ = [m](const torch::Tensor& x) mutable { return m->forward(x); };
  } else {
    throw DataError("unknown architecture type '" + type + "' (known: conv-ebm, conv-ebm-nc, unet-ebm-nc, conv-classifier)");
  }
  for (const auto& m : module_->modules())
    if (const auto* d = m->as<torch::nn::Dropout>(); d && d->options.p() > 0) has_dropout_ = true;
  set_card({{"arch", arch_}});
}

torch::Tensor NativeModel::energy(const torch::Tensor& x) {
  auto out = forward_(x);
  return num_classes_ > 0 ? free_energy(out, temperature) : out;
}

torch::Tensor NativeModel::energy_at(const torch::Tensor& x, const torch::Tensor& sigma) {
  return forward_sigma_ ? forward_sigma_(x, sigma) : energy(x);
}

torch::Tensor NativeModel::logits(const torch::Tensor& x) {
  return num_classes_ > 0 ? forward_(x) : torch::Tensor();
}

torch::Tensor NativeModel::features(const torch::Tensor& x) {
  return classifier_ ? classifier_->features(x) : torch::Tensor();
}

std::pair<torch::Tensor, torch::Tensor> NativeModel::linear_head() const {
  if (!classifier_) return {};
  const auto& h = classifier_->head_layer();
  return {h->weight, h->bias};
}

std::string NativeModel::describe() const {
  std::ostringstream s;
  s << arch_.value("type", "?") << "(width=" << arch_.value("width", 32);
  if (num_classes_) s << ", classes=" << num_classes_;
  s << ")";
  return s.str();
}

// ---------------------------------------------------------------- ScriptModel
struct ScriptModel::Impl {
  torch::jit::script::Module m;
  bool exported_by_ebmkit = false;  // its extra file card.json has "exported_from" (export.h)
  // The mode set_training() last set. Module::is_training() cannot tell: a
  // module built by Module::define (export.h) has no "training" attribute,
  // and then reads as training whatever eval() did.
  bool training = false;
};

ScriptModel::ScriptModel(const std::string& path, std::vector<int64_t> probe_shape)
    : impl_(std::make_unique<Impl>()), path_(path) {
  try {
    torch::jit::ExtraFilesMap extra{{"card.json", ""}};
    impl_->m = torch::jit::load(path, c10::nullopt, extra);
    try {
      const json c = json::parse(extra["card.json"]);
      impl_->exported_by_ebmkit = c.is_object() && c.contains("exported_from");
    } catch (const json::exception&) {
      // no card, or not JSON: a file from elsewhere
    }
  } catch (const std::exception& e) {
    throw DataError("'" + path + "': not a native model folder nor a loadable TorchScript file (" +
                    torch_message(e, 200) + ")");
  }
  impl_->m.eval();
  probe_shape.insert(probe_shape.begin(), 2);
  torch::Tensor out;
  try {
    torch::NoGradGuard ng;
    out = impl_->m.forward({torch::full(probe_shape, 0.5f)}).toTensor();
  } catch (const std::exception& e) {
    throw DataError("'" + path + "': TorchScript forward failed on a probe of shape " +
                    c10::str(c10::IntArrayRef(probe_shape)) + ": " + torch_message(e));
  }
  if (out.dim() == 2 && out.size(0) == 2) num_classes_ = out.size(1);
  else if (!(out.dim() == 1 && out.size(0) == 2))
    throw DataError("'" + path + "': TorchScript forward must return [B] energies or [B,K] logits; got " +
                    c10::str(out.sizes()) + " for B=2");
}

ScriptModel::~ScriptModel() = default;

torch::Tensor ScriptModel::logits(const torch::Tensor& x) {
  return num_classes_ ? impl_->m.forward({x}).toTensor() : torch::Tensor();
}

torch::Tensor ScriptModel::energy(const torch::Tensor& x) {
  auto out = impl_->m.forward({x}).toTensor();
  return num_classes_ ? free_energy(out) : out;
}

std::string ScriptModel::describe() const {
  return "torchscript(" + path_ + (num_classes_ ? ", classes=" + std::to_string(num_classes_) : "") + ")";
}

std::vector<torch::Tensor> ScriptModel::parameters() {
  std::vector<torch::Tensor> p;
  for (const auto& t : impl_->m.parameters()) p.push_back(t);
  return p;
}

void ScriptModel::set_training(bool on) {
  on ? impl_->m.train() : impl_->m.eval();
  impl_->training = on;
}

bool ScriptModel::rows_independent() const { return !impl_->training && impl_->exported_by_ebmkit; }

// ---------------------------------------------------------------- registry
json load_card(const std::string& path) {
  if (is_dir(path)) {
    const std::string cp = path + "/card.json";
    if (!is_file(cp)) throw DataError("'" + path + "' is a folder without card.json: not an ebmkit model");
    json card;
    try {
      card = json::parse(read_file(cp));
    } catch (const json::exception& e) {
      throw DataError("'" + cp + "': invalid JSON: " + e.what());
    }
    if (!card.is_object()) throw DataError("'" + cp + "' is not a JSON object");
    return card;
  }
  if (!is_file(path))
    throw DataError("model '" + path + "' " +
                    (path_exists(path) ? "is neither a model folder nor a regular file" : "does not exist"));
  return json{{"format", "torchscript"}, {"path", path}};
}

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, ModelFormat> formats;
};

// Built-in formats are registered on first use (no static-initialisation order
// to worry about, and nothing for the linker to drop from a static library).
Registry& registry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    reg->formats["native"] = {[](const std::string& path, const json& card) -> EnergyPtr {
                                if (!card.contains("arch"))
                                  throw DataError("'" + path + "/card.json' has no \"arch\"");
                                // A card is a user's file: a bad "arch" or "temperature" is a DataError naming it.
                                std::shared_ptr<NativeModel> m;
                                try {
                                  if (!card["arch"].is_object()) throw DataError("\"arch\" is not an object");
                                  m = std::make_shared<NativeModel>(card["arch"]);
                                  m->temperature = card.value("temperature", 1.0);
                                } catch (const std::exception& e) {
                                  throw DataError("'" + path + "/card.json': " + torch_message(e));
                                }
                                load_weights(path, *m);
                                return m;
                              },
                              [](const std::string& path) { return path + "/weights.pt"; }};
    reg->formats["torchscript"] = {
        [](const std::string& path, const json&) -> EnergyPtr { return std::make_shared<ScriptModel>(path); },
        [](const std::string& path) { return path; }};
    reg->formats["ensemble"] = {[](const std::string& path, const json& card) { return load_ensemble(path, card); },
                                [](const std::string& path) { return path + "/card.json"; }};
    return reg;
  }();
  return *r;
}

ModelFormat find_format(const std::string& path, const json& card) {
  if (card.contains("format") && !card["format"].is_string())
    throw DataError("model '" + path + "': \"format\" must be a string, got " + card["format"].dump().substr(0, 60));
  const std::string name = card.value("format", "native");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto it = r.formats.find(name);
  if (it == r.formats.end()) {
    std::string known;
    for (const auto& [k, v] : r.formats) known += (known.empty() ? "" : ", ") + k;
    throw DataError("model '" + path + "' has format '" + name + "', which is not registered (known: " + known + ")");
  }
  return it->second;
}

}  // namespace

void register_model_format(const std::string& name, ModelFormat format) {
  if (name.empty() || !format.load || !format.content_file)
    throw UsageError("register_model_format: a format needs a name, a loader and a content file");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.formats[name] = std::move(format);
}

std::vector<std::string> model_formats() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [k, v] : r.formats) names.push_back(k);
  return names;
}

EnergyPtr load_model(const std::string& path) {
  json card = load_card(path);
  EnergyPtr m = find_format(path, card).load(path, card);
  m->set_card(std::move(card));
  m->set_training(false);
  return m;
}

void load_weights(const std::string& dir, NativeModel& model) {
  const std::string wp = dir + "/weights.pt";
  if (!is_file(wp)) throw DataError("model '" + dir + "' has no weights.pt");
  // Module::load takes each stored tensor's shape as it is, so shapes are
  // compared here: weights of another architecture must not load silently.
  std::vector<std::pair<std::string, std::vector<int64_t>>> want;
  for (const auto& p : model.module()->named_parameters()) want.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : model.module()->named_buffers()) want.emplace_back(b.key(), b.value().sizes().vec());
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(wp);
    model.module()->load(ar);
  } catch (const c10::Error& e) {
    throw DataError("'" + wp + "': cannot load weights for " + model.describe() + ": " + torch_message(e));
  }
  auto params = model.module()->named_parameters();
  auto buffers = model.module()->named_buffers();
  for (const auto& [name, shape] : want) {
    const torch::Tensor* t = params.find(name);
    if (!t) t = buffers.find(name);
    if (t && t->sizes().vec() != shape)
      throw DataError("'" + wp + "': cannot load weights for " + model.describe() + ": '" + name + "' is " +
                      c10::str(t->sizes()) + " in the file, " + c10::str(c10::IntArrayRef(shape)) +
                      " for the card's \"arch\"");
  }
}

void save_model(const std::string& dir, NativeModel& model) {
  make_dirs(dir);
  torch::serialize::OutputArchive ar;
  model.module()->save(ar);
  std::ostringstream os;
  ar.save_to(os);
  write_file_atomic(dir + "/weights.pt", os.str());
  json card = model.card();
  card["arch"] = model.arch();
  card["format"] = "native";
  if (model.num_classes() > 0) card["temperature"] = model.temperature;
  write_file_atomic(dir + "/card.json", card.dump(2) + "\n");
}

json report_provenance(const std::string& command, const std::vector<std::string>& model_paths) {
  json models = json::array();
  for (const auto& p : model_paths) models.push_back({{"path", p}, {"sha256", model_hash(p)}});
  return {{"command", command}, {"models", models}};
}

std::string model_hash(const std::string& path) {
  const json card = load_card(path);
  return sha256_file(find_format(path, card).content_file(path));
}

}  // namespace ebm
