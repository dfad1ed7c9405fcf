// detector_export.h: a calibrated OOD detector (ood.h, Detector) as one
// TorchScript module, so the threshold and the p-value table travel with the
// graph:
//
//   forward(x [B,C,H,W] in [0,1]) -> (score [B] float64, flag [B] bool, p_value [B] float64)
//     score   = the detector's score of x (higher = more OOD)
//     flag    = score > threshold
//     p_value = (1 + #{val_scores >= score}) / (n_val + 1)
//
// with the module attributes `threshold` (float) and buffer `val_scores`
// (sorted, float64 [n_val]), and the detector JSON as the extra file
// "detector.json" beside the model's "card.json". Scores with a TorchScript
// form: energy (a classifier's free energy at the detector's temperature, an
// energy model's or ensemble's energy), msp and maxlogit. The others need
// what a graph cannot hold: a PNG coder (energy-complexity, combined), input
// gradients (grad-norm, odin) or fitted feature statistics (the post-hoc
// scores), and are refused with a UsageError that says so.
#pragma once

#include <string>

namespace ebm {

/// True when `path` is a detector JSON file ("format": "ebmkit-ood-detector").
bool is_detector_file(const std::string& path);

/// Export the detector at `detector_path` to the TorchScript file `out`,
/// written atomically. Its model is `model_path` if given, else found as
/// detector_model_path() finds it; either way checked against the recorded hash.
void export_detector(const std::string& detector_path, const std::string& out, const std::string& model_path = "");

}  // namespace ebm
