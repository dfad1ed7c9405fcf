// detector_export.cpp: a calibrated detector as one TorchScript module (detector_export.h).
#include "ebm/ood/detector_export.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>

#include "ebm/core/common.h"
#include "ebm/core/export.h"
#include "ebm/core/fs.h"
#include "ebm/core/models.h"
#include "ebm/ood/ood.h"

namespace ebm {

bool is_detector_file(const std::string& path) {
  if (path.size() < 5 || path.substr(path.size() - 5) != ".json" || !path_exists(path)) return false;
  try {
    return json::parse(read_file(path)).value("format", "") == "ebmkit-ood-detector";
  } catch (const std::exception&) {
    return false;
  }
}


void export_detector(const std::string& detector_path, const std::string& out, const std::string& model_override) {
  const Detector d = Detector::load(detector_path);
  const std::string score = canonical_score(d.score);
  if (score != "energy" && score != "msp" && score != "maxlogit")
    throw UsageError("export: the detector's score '" + d.score +
                     "' has no TorchScript form (energy-complexity and combined need a PNG coder, grad-norm and "
                     "odin input gradients, the post-hoc scores fitted features); calibrate one on energy, msp "
                     "or maxlogit to export it");
  const std::string model_path = detector_model_path(d, detector_path, model_override);
  check_model(d, model_path);
  const json card = load_card(model_path);
  const bool clf = card.value("format", "native") == "native" &&
                   card.value("arch", json::object()).value("type", "") == "conv-classifier";
  if (!clf && score != "energy")
    throw UsageError("export: score '" + score + "' needs a classifier, and '" + model_path + "' is not one");

  torch::jit::Module m("ebmkit_OODDetector");
  // A classifier gives logits, scored here at the detector's temperature in
  // float64 as ood/scores.cpp does; any other model gives its energies.
  m.register_module("model", script_model(model_path, /*energy=*/!clf));
  m.register_attribute("threshold", c10::FloatType::get(), d.threshold);
  m.register_buffer("val_scores", torch::tensor(d.val_scores, torch::kFloat64));
  std::string s;
  if (!clf) {
    s = "self.model.forward(x).double()";
  } else if (score == "energy") {
    s = "-" + script_number(d.temperature) + " * torch.logsumexp(self.model.forward(x).double() / " + script_number(d.temperature) +
        ", 1)";
  } else if (score == "msp") {
    s = "-torch.max(torch.softmax(self.model.forward(x).double(), 1), 1)[0]";
  } else {
    s = "-torch.max(self.model.forward(x).double(), 1)[0]";
  }
  m.define(
      "def forward(self, x):\n"
      "    s = " + s + "\n"
      "    n = self.val_scores.size(0)\n"
      "    below = torch.searchsorted(self.val_scores, s)\n"
      "    p = (1.0 + (n - below).double()) / (n + 1.0)\n"
      "    return s, s > self.threshold, p\n");
  m.eval();

  json c = card;
  c["exported_from"] = model_path;
  c["exported_from_sha256"] = d.model_hash;
  c["format"] = "torchscript-export";
  c["torchscript_forward"] =
      "x [B,C,H,W] in [0,1] -> (score [B] float64, flag [B] bool = score > threshold, p_value [B] float64)";
  torch::jit::ExtraFilesMap extra{{"card.json", c.dump(2)}, {"detector.json", d.to_json().dump(1)}};
  std::ostringstream bytes;
  m.save(bytes, extra);
  write_file_atomic(out, bytes.str());
}

}  // namespace ebm
