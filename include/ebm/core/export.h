// export.h: native models out to TorchScript, for Python and other runtimes.
//
// export_torchscript() writes a built-in model (conv-ebm, conv-classifier) as
// one TorchScript file that `torch.jit.load(F)` opens in plain PyTorch:
//   forward(x [B,C,H,W] in [0,1]) -> energies [B]     (conv-ebm)
//                                 -> logits   [B,K]   (conv-classifier; the
//                                    free energy is -T*logsumexp(logits/T), T
//                                    on the card, 1 by default)
// The graph is compiled from TorchScript source generated from the module's
// own layers (torch::jit::Module::define), so it needs no Python, and the
// weights are the model's own tensors. The card travels as the extra file
// "card.json" (torch.jit.load(F, _extra_files={"card.json": ""})), with
// "exported_from" and the source's SHA-256 added.
//
// An exported file is itself a model ebmkit loads (the "torchscript" format),
// and it gives the native model's energies to float rounding (tests/test_export.cpp).
#pragma once

#include <string>

namespace ebm {

/// Export the native model folder `model_path` to the TorchScript file `out`
/// (written atomically). UsageError for a model that is not a built-in native
/// architecture (TorchScript files, ensembles); DataError for unreadable input.
void export_torchscript(const std::string& model_path, const std::string& out);

}  // namespace ebm
