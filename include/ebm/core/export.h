// export.h: models out to TorchScript (and plain state dicts), for Python and
// other runtimes.
//
// export_torchscript() writes a model as one TorchScript file that
// `torch.jit.load(F)` opens in plain PyTorch:
//   native conv-ebm:        forward(x [B,C,H,W] in [0,1]) -> energies [B]
//   native conv-classifier: forward(x) -> logits [B,K] (the free energy is
//                           -T*logsumexp(logits/T), T on the card, 1 by default)
//   ensemble:               forward(x) -> energies [B], the standardised sum of
//                           its members (core/ensemble.h), members inside
// The graphs are compiled from TorchScript source generated from the modules'
// own layers (torch::jit::Module::define), so no Python is needed, and the
// weights are the models' own tensors. The card travels as the extra file
// "card.json" (torch.jit.load(F, _extra_files={"card.json": ""})), with
// "exported_from" and the source's SHA-256 added. Calibrated OOD detectors
// export through ood/detector_export.h.
//
// An exported file is itself a model ebmkit loads (the "torchscript" format),
// and it gives the source model's energies to float rounding (tests/test_export.cpp).
#pragma once

#include <torch/script.h>

#include <nlohmann/json.hpp>
#include <string>

namespace ebm {

/// The TorchScript module of the model at `model_path`. energy = true: forward
/// returns energies [B] (a classifier's free energy at its card temperature);
/// false: a classifier's logits [B,K] (native models only). UsageError for a
/// model with no TorchScript translation (TorchScript files, unknown layers).
torch::jit::Module script_model(const std::string& model_path, bool energy);

/// `v` as a TorchScript float literal that reads back exactly (17 digits, "1.0" not "1").
std::string script_number(double v);

/// Save `m` to `out` atomically with `card` as the extra file "card.json".
void save_script(torch::jit::Module& m, const nlohmann::json& card, const std::string& out);

/// Export the native model folder or ensemble `model_path` to the TorchScript
/// file `out` (written atomically): a classifier's forward gives logits, every
/// other model's energies. UsageError for a model that cannot be exported;
/// DataError for unreadable input.
void export_torchscript(const std::string& model_path, const std::string& out);

/// Write a native model's parameters as a pickled dict {name: tensor}, the
/// format of Python's torch.save(module.state_dict()), so `torch.load(out)`
/// reads it (names as in the C++ module, e.g. "body.0.weight").
void export_state_dict(const std::string& model_path, const std::string& out);

}  // namespace ebm
