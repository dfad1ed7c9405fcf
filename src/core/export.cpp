#include "ebm/core/export.h"

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"

namespace ebm {

namespace {

namespace nn = torch::nn;

std::string ints(torch::ExpandingArray<2> a) {
  return "[" + std::to_string((*a)[0]) + ", " + std::to_string((*a)[1]) + "]";
}

// TorchScript for one built-in layer, applied to `h`; its parameters are
// registered on `m` under `prefix` with '.' replaced by '_'.
std::string layer_source(const std::string& prefix, nn::Module& layer, torch::jit::Module& m) {
  auto param = [&](const char* name, const torch::Tensor& t) {
    const std::string n = prefix + "_" + name;
    m.register_parameter(n, t.detach().clone(), /*is_buffer=*/false);
    return "self." + n;
  };
  if (auto* c = layer.as<nn::Conv2d>()) {
    const auto& o = c->options;
    const auto* pad_ptr = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
    if (!pad_ptr) throw UsageError("export: convolutions with 'same'/'valid' padding are not supported");
    if ((*o.dilation())[0] != 1 || (*o.dilation())[1] != 1 || o.groups() != 1)
      throw UsageError("export: dilated or grouped convolutions are not supported");
    const auto pad = *pad_ptr;
    const std::string b = c->bias.defined() ? param("bias", c->bias) : "None";
    return "h = torch.conv2d(h, " + param("weight", c->weight) + ", " + b + ", " + ints(o.stride()) + ", " + ints(pad) + ")";
  }
  if (auto* l = layer.as<nn::Linear>()) {
    const std::string b = l->bias.defined() ? param("bias", l->bias) : "None";
    return "h = torch.linear(h, " + param("weight", l->weight) + ", " + b + ")";
  }
  if (layer.as<nn::SiLU>()) return "h = torch.silu(h)";
  if (auto* r = layer.as<nn::LeakyReLU>()) {
    std::ostringstream s;
    s.precision(17);
    s << "h = torch.leaky_relu(h, " << r->options.negative_slope() << ")";
    return s.str();
  }
  if (layer.as<nn::Flatten>()) return "h = torch.flatten(h, 1)";
  if (auto* p = layer.as<nn::AdaptiveAvgPool2d>()) {
    const auto& size = *p->options.output_size();
    TORCH_CHECK(size[0] && size[1] && *size[0] == 1 && *size[1] == 1, "export: only global average pooling is supported");
    return "h = torch.adaptive_avg_pool2d(h, [1, 1])";
  }
  if (layer.as<nn::Dropout>()) return "";  // identity at inference
  throw UsageError("export: layer " + layer.name() + " of " + prefix + " has no TorchScript translation");
}

}  // namespace

namespace {


// The TorchScript module of a native model: forward(x) -> energies [B]
// (conv-ebm) or logits [B,K] (conv-classifier).
torch::jit::Module script_native(NativeModel& native) {
  const std::string type = native.arch().value("type", "");
  if (native.noise_conditional())
    throw UsageError("export: " + type + " is noise-conditional (E(x, sigma)); TorchScript export covers conv-ebm and "
                     "conv-classifier");
  auto root = native.module();
  root->eval();
  torch::jit::Module m("ebmkit_" + std::string(type == "conv-ebm" ? "ConvEBM" : "ConvClassifier"));
  std::ostringstream src;
  src << "def forward(self, x):\n    h = x * 2.0 - 1.0\n";
  // Both built-in architectures are head(body(x * 2 - 1)) (models.cpp).
  for (const auto& item : root->named_children()) {
    const std::string& name = item.key();
    const auto& child = item.value();
    if (name == "body") {
      for (const auto& l : child->named_children()) {
        const std::string line = layer_source("body_" + l.key(), *l.value(), m);
        if (!line.empty()) src << "    " << line << "\n";
      }
    } else if (name == "head") {
      src << "    " << layer_source("head", *child, m) << "\n";
    } else {
      throw UsageError("export: unexpected submodule '" + name + "' in " + type);
    }
  }
  src << (type == "conv-ebm" ? "    return h.squeeze(1)\n" : "    return h\n");
  m.define(src.str());
  m.eval();
  return m;
}

NativeModel& as_native(const EnergyPtr& e, const std::string& path) {
  auto* native = dynamic_cast<NativeModel*>(e.get());
  if (!native) throw UsageError("export: '" + path + "' is not a native model");
  return *native;
}

}  // namespace

std::string script_number(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  std::string t = s.str();
  if (t.find_first_of(".eEn") == std::string::npos) t += ".0";  // a float literal, not an int
  return t;
}

torch::jit::Module script_model(const std::string& model_path, bool energy) {
  const json card = load_card(model_path);
  const std::string format = card.value("format", "native");
  auto loaded = load_model(model_path);  // validates the folder (and an ensemble's member hashes)
  if (format == "native") {
    NativeModel& native = as_native(loaded, model_path);
    auto m = script_native(native);
    if (!energy || native.num_classes() == 0) return m;
    // A classifier's energy is its free energy at the card's temperature (models.cpp).
    torch::jit::Module w("ebmkit_FreeEnergy");
    w.register_module("net", m);
    w.define("def forward(self, x):\n    return -" + script_number(native.temperature) + " * torch.logsumexp(self.net.forward(x) / " +
             script_number(native.temperature) + ", 1)\n");
    w.eval();
    return w;
  }
  if (format == "ensemble") {
    if (!energy) throw UsageError("export: '" + model_path + "' is an ensemble, which has energies, not logits");
    // E(x) = sum_i w_i * (E_i(x) - shift_i) / scale_i, in SumEnergy's order (compose.cpp).
    torch::jit::Module m("ebmkit_Ensemble");
    std::ostringstream src;
    src << "def forward(self, x):\n";
    int k = 0;
    for (const auto& mj : card["members"]) {
      const std::string path =
          (std::filesystem::path(model_path) / mj["model"].get<std::string>()).lexically_normal().string();
      const std::string name = "member" + std::to_string(k);
      m.register_module(name, script_model(path, /*energy=*/true));
      src << "    e" << k << " = (self." << name << ".forward(x) - " << script_number(mj["shift"].get<double>()) << ") / "
          << script_number(mj["scale"].get<double>()) << " * " << script_number(mj["weight"].get<double>()) << "\n";
      src << "    " << (k == 0 ? "e = e0" : "e = e + e" + std::to_string(k)) << "\n";
      ++k;
    }
    src << "    return e\n";
    m.define(src.str());
    m.eval();
    return m;
  }
  throw UsageError("export: '" + model_path + "' is a '" + format +
                   "' model; native models and ensembles of them export to TorchScript");
}

void save_script(torch::jit::Module& m, const json& card, const std::string& out) {
  torch::jit::ExtraFilesMap extra{{"card.json", card.dump(2)}};
  std::ostringstream bytes;
  m.save(bytes, extra);
  write_file_atomic(out, bytes.str());
}

void export_torchscript(const std::string& model_path, const std::string& out) {
  const json card = load_card(model_path);
  const std::string format = card.value("format", "native");
  const bool native = format == "native";
  auto m = script_model(model_path, /*energy=*/!native);  // a classifier exports its logits
  json c = card;
  c["exported_from"] = model_path;
  c["exported_from_sha256"] = model_hash(model_path);
  const bool clf = native && card.value("arch", json::object()).value("type", "") == "conv-classifier";
  c["torchscript_forward"] = clf ? "x [B,C,H,W] in [0,1] -> logits [B,K]; energy = -T*logsumexp(logits/T)"
                                 : "x [B,C,H,W] in [0,1] -> energies [B]";
  if (!native) c["format"] = "torchscript-export";  // the card of what was exported, not a loadable folder card
  save_script(m, c, out);
}

void export_state_dict(const std::string& model_path, const std::string& out) {
  auto loaded = load_model(model_path);
  NativeModel& native = as_native(loaded, model_path);
  // A dict of parameter name -> tensor, pickled as Python's torch.save does,
  // so torch.load(out) reads it into a module with the same parameter names.
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (const auto& p : native.module()->named_parameters()) dict.insert(p.key(), p.value().detach().clone());
  for (const auto& b : native.module()->named_buffers()) dict.insert(b.key(), b.value().detach().clone());
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
  write_file_atomic(out, std::string(bytes.begin(), bytes.end()));
}

}  // namespace ebm
