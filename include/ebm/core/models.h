// models.h: built-in architectures and the one model registry.
//
// A native model is a folder:
//     MODEL/card.json     the JSON card: {"arch": {...}, "task", "data", "command", "metrics", ...}
//     MODEL/weights.pt    parameters (torch::serialize archive)
// A TorchScript model is a single file made by torch.jit.save in Python; its
// forward(x[B,C,H,W]) returns [B] energies, or [B,K] logits for a classifier
// (energy = -logsumexp(logits)). load_model() tells the two apart by itself.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ebm/core/energy.h"

namespace ebm {

using json = nlohmann::json;

struct ConvEBMOptions {
  /// Input channels.
  TORCH_ARG(int64_t, channels) = 1;
  /// Base width; layers use width, 2*width, 4*width channels.
  TORCH_ARG(int64_t, width) = 32;
  /// Input height and width S, a multiple of 4 (28 for MNIST; 64 scales the
  /// same layers to larger images, as the performance table does).
  TORCH_ARG(int64_t, image_size) = 28;
};

/// Unconditional conv energy (IGEBM/UvA style, SiLU): S -> S/2 -> S/4 ->
/// ceil(S/8) (28 -> 14 -> 7 -> 4), then a linear head to one scalar.
/// x: [B,C,S,S] in [0,1] -> e [B].
class ConvEBMImpl : public torch::nn::Module {
 public:
  explicit ConvEBMImpl(const ConvEBMOptions& o = {});
  torch::Tensor forward(const torch::Tensor& x);  // [B,C,H,W] -> [B]
  ConvEBMOptions options;

 private:
  torch::nn::Sequential body{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(ConvEBM);

struct NoiseConditionalEBMOptions {
  /// Image channels (the network sees one more: the noise-level plane).
  TORCH_ARG(int64_t, channels) = 1;
  /// Base width of the ConvEBM inside.
  TORCH_ARG(int64_t, width) = 32;
};

/// Noise-conditional conv energy E(x, sigma) for annealed sampling (NCSN,
/// Song & Ermon 2019): a ConvEBM f on the image with one extra input plane
/// holding 1 + log(sigma)/log(100) (0 at sigma 0.01, 1 at sigma 1), and
/// NCSNv2's output scaling E = f / sigma, so that sigma * grad_x E, the
/// quantity DSM regresses on unit noise, has the same scale at every level.
/// x: [B,C,28,28] in [0,1] (noisy images may leave it), sigma: [B] > 0 -> e [B].
class NoiseConditionalEBMImpl : public torch::nn::Module {
 public:
  explicit NoiseConditionalEBMImpl(const NoiseConditionalEBMOptions& o = {});
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma);  // [B,C,H,W], [B] -> [B]
  NoiseConditionalEBMOptions options;

 private:
  ConvEBM net{nullptr};
};
TORCH_MODULE(NoiseConditionalEBM);

/// Noise-conditional energy of a denoiser (Salimans & Ho 2021, "Should EBMs
/// model the energy or the score?"): a small U-Net D (28 -> 14 -> 7 -> 14 ->
/// 28, skip connections, SiLU) reads the image and the same sigma plane as
/// NoiseConditionalEBM and outputs a clean-image estimate; the energy is
///   E(x, sigma) = ||x - D(x, sigma)||^2 / (2 sigma^2)
/// whose gradient is (I - J_D)^T (x - D) / sigma^2, the Tweedie residual over
/// sigma^2 when D is the posterior mean. Same options as NoiseConditionalEBM.
/// x: [B,C,28,28], sigma: [B] > 0 -> e [B].
class UNetEnergyImpl : public torch::nn::Module {
 public:
  explicit UNetEnergyImpl(const NoiseConditionalEBMOptions& o = {});
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma);  // [B,C,H,W], [B] -> [B]
  /// The denoiser's output D(x, sigma): [B,C,28,28].
  torch::Tensor denoise(const torch::Tensor& x, const torch::Tensor& sigma);
  NoiseConditionalEBMOptions options;

 private:
  torch::nn::Sequential in1{nullptr}, down1{nullptr}, down2{nullptr}, mid2{nullptr}, mid1{nullptr};
  torch::nn::ConvTranspose2d up2{nullptr}, up1{nullptr};
  torch::nn::Conv2d out{nullptr};
};
TORCH_MODULE(UNetEnergy);

struct ConvClassifierOptions {
  TORCH_ARG(int64_t, channels) = 1;
  TORCH_ARG(int64_t, width) = 32;
  TORCH_ARG(int64_t, num_classes) = 10;
  /// Activation: "silu" (smooth, good for Langevin) or "leaky_relu".
  TORCH_ARG(std::string, activation) = "silu";
  /// Dropout before the final layer (0 = off).
  TORCH_ARG(double, dropout) = 0.0;
};

/// Conv classifier; its energy is the free energy -T*logsumexp(logits/T).
/// x: [B,C,28,28] in [0,1] -> logits [B,K].
class ConvClassifierImpl : public torch::nn::Module {
 public:
  explicit ConvClassifierImpl(const ConvClassifierOptions& o = {});
  torch::Tensor forward(const torch::Tensor& x);  // [B,C,H,W] -> [B,K]
  /// Penultimate features: [B,C,H,W] -> [B,4*width] (after global pooling).
  torch::Tensor features(const torch::Tensor& x);
  /// The final linear layer: logits = head(features(x)).
  const torch::nn::Linear& head_layer() const { return head; }
  ConvClassifierOptions options;

 private:
  torch::nn::Sequential body{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(ConvClassifier);

/// A built-in nn model seen as an Energy. Owns its module and its card.
class NativeModel : public Energy {
 public:
  /// Build an untrained model from an architecture description, e.g.
  /// {"type":"conv-ebm","width":32} (optional "image_size", default 28: conv-ebm only),
  /// {"type":"conv-classifier","width":32,"num_classes":10} or
  /// {"type":"conv-ebm-nc","width":32,"sigma_min":0.01} (energy(x) is E(x, sigma_min)) or
  /// {"type":"unet-ebm-nc","width":32,"sigma_min":0.01} (the same, UNetEnergy).
  explicit NativeModel(const json& arch);
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor logits(const torch::Tensor& x) override;
  /// conv-ebm-nc: E(x, sigma); other architectures ignore sigma.
  torch::Tensor energy_at(const torch::Tensor& x, const torch::Tensor& sigma) override;
  bool noise_conditional() const override { return bool(forward_sigma_); }
  int64_t num_classes() const override { return num_classes_; }
  /// conv-classifier: its pooled features [B,4*width]; conv-ebm: undefined.
  torch::Tensor features(const torch::Tensor& x) override;
  std::pair<torch::Tensor, torch::Tensor> linear_head() const override;
  std::string describe() const override;
  std::vector<torch::Tensor> parameters() override { return module_->parameters(); }
  void set_training(bool on) override { module_->train(on); }
  /// The built-in layers keep no batch statistics, so rows never interact.
  /// Dropout in training mode draws a mask per call: a model with dropout is
  /// split only in eval mode, so that a split and a whole pass agree.
  bool rows_independent() const override { return !has_dropout_ || !module_->is_training(); }

  std::shared_ptr<torch::nn::Module> module() const { return module_; }
  const json& arch() const { return arch_; }
  /// Temperature T of the free energy for classifiers (default 1).
  double temperature = 1.0;

 private:
  json arch_;
  int64_t num_classes_ = 0;
  std::shared_ptr<torch::nn::Module> module_;
  std::function<torch::Tensor(const torch::Tensor&)> forward_;
  std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)> forward_sigma_;  // conv-ebm-nc only
  ConvClassifier classifier_{nullptr};  // set for conv-classifier
  bool has_dropout_ = false;            // any torch::nn::Dropout with p > 0 among the modules
};

/// A TorchScript module loaded from Python (torch.jit.save). The output shape
/// of forward on one probe image decides energy [B] vs classifier [B,K].
class ScriptModel : public Energy {
 public:
  /// probe_shape: the [C,H,W] used to probe the output rank.
  explicit ScriptModel(const std::string& path, std::vector<int64_t> probe_shape = {1, 28, 28});
  ~ScriptModel() override;
  torch::Tensor energy(const torch::Tensor& x) override;
  torch::Tensor logits(const torch::Tensor& x) override;
  int64_t num_classes() const override { return num_classes_; }
  std::string describe() const override;
  std::vector<torch::Tensor> parameters() override;
  void set_training(bool on) override;
  /// Files that ebmkit exported (their extra file card.json has "exported_from": ebmkit's own
  /// row-wise layers), in eval mode. Any other TorchScript file might mix rows
  /// or draw random numbers inside forward, so it is always evaluated whole.
  bool rows_independent() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  int64_t num_classes_ = 0;
};

// ---------------------------------------------------------------- formats
// The model registry. A model is a path: a folder with card.json, whose
// "format" field names its format ("native" when absent), or a single file
// (the "torchscript" format). Built in: "native", "torchscript" and
// "ensemble" (ensemble.h). Applications and library users add formats with
// register_model_format(); load_model() and model_hash() dispatch on it, so
// the core never includes an application header.

struct ModelFormat {
  /// Build the energy; `card` is load_card(path). The loader need not set the
  /// card on the energy: load_model() does.
  std::function<EnergyPtr(const std::string& path, const json& card)> load;
  /// The file whose bytes identify the model for model_hash() (its weights,
  /// or the card when the card pins everything, as an ensemble's does).
  std::function<std::string(const std::string& path)> content_file;
};

/// Register (or replace) the format named `name`. Thread-safe.
void register_model_format(const std::string& name, ModelFormat format);

/// Names of the registered formats, sorted.
std::vector<std::string> model_formats();

/// Load a model from any registered format, with its card attached
/// (Energy::card()). Throws DataError naming the path and the problem,
/// including an unknown "format".
EnergyPtr load_model(const std::string& path);

/// The card of a model: card.json for folders, a synthesized
/// {"format":"torchscript","path":...} for single files.
json load_card(const std::string& path);

/// Save a native model atomically: weights.pt and card.json (card includes
/// "arch"). The folder is created if needed; existing files are replaced only
/// once the new ones are fully written.
void save_model(const std::string& dir, NativeModel& model);

/// Load only the weights of a saved native folder into `model`.
void load_weights(const std::string& dir, NativeModel& model);

/// SHA-256 (64 hex digits) of the file that identifies a model: a native
/// model's weights.pt, a TorchScript file, or an ensemble's card.json (which
/// pins its members' hashes). Reports record it; detectors and ensembles use
/// it to refuse a model that changed.
std::string model_hash(const std::string& path);

/// What every report records so that anyone can rerun it and know it used
/// the same models: {"command": command, "models": [{"path", "sha256"}, ...]}
/// (paths as given; committed reports give repository-relative paths).
json report_provenance(const std::string& command, const std::vector<std::string>& model_paths);

}  // namespace ebm
