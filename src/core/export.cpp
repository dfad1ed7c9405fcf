#include "ebm/core/export.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdio>
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

void export_torchscript(const std::string& model_path, const std::string& out) {
  const json card = load_card(model_path);
  if (card.value("format", "native") != "native")
    throw UsageError("export: '" + model_path + "' is a '" + card.value("format", "") +
                     "' model; only native models (conv-ebm, conv-classifier) export to TorchScript");
  auto energy = load_model(model_path);
  auto* native = dynamic_cast<NativeModel*>(energy.get());
  if (!native) throw UsageError("export: '" + model_path + "' is not a native model");
  const std::string type = native->arch().value("type", "");
  auto root = native->module();
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

  json c = card;
  c["exported_from"] = model_path;
  c["exported_from_sha256"] = model_hash(model_path);
  c["torchscript_forward"] = type == "conv-ebm" ? "x [B,C,H,W] in [0,1] -> energies [B]"
                                                : "x [B,C,H,W] in [0,1] -> logits [B,K]; energy = -T*logsumexp(logits/T)";
  torch::jit::ExtraFilesMap extra{{"card.json", c.dump(2)}};
  std::ostringstream bytes;
  m.save(bytes, extra);
  write_file_atomic(out, bytes.str());
}

}  // namespace ebm
