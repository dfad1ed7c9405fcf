// ebm export --model M --out F [--format torchscript|state-dict]: models out to
// Python (core/export.h; detectors: ood/detector_export.h).
#include <cstdio>

#include "cli.h"
#include "ebm/core/export.h"
#include "ebm/ood/detector_export.h"

namespace ebm::cli {

void add_export(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "export",
      "Write a model as one TorchScript file that plain PyTorch loads (native models, ensembles,\n"
      "calibrated OOD detectors), or a native model's weights as a Python state dict");
  static std::string model, out, format = "torchscript";
  static Common c;
  sub->add_option("--model", model, "Native model folder, ensemble folder, or detector JSON (M.detector.json)")
      ->required();
  sub->add_option("--out", out, "File to write (e.g. model.pt)")->required();
  sub->add_option("--format", format, "torchscript | state-dict (native models: torch.load gives {name: tensor})")
      ->capture_default_str()
      ->check(CLI::IsMember({"torchscript", "state-dict"}));
  add_common(sub, c);
  sub->footer(
      "In Python:\n"
      "  m = torch.jit.load('model.pt', _extra_files={'card.json': ''})   # the card lands in the dict\n"
      "  e = m(x)   # x [B,1,28,28] in [0,1]: energies [B] (native energy models, ensembles),\n"
      "             # logits [B,K] (classifiers; energy = -T*logsumexp(logits/T))\n"
      "  score, flag, p_value = torch.jit.load('detector.pt')(x)   # an exported detector\n"
      "  sd = torch.load('weights-sd.pt')   # --format state-dict\n"
      "A TorchScript export of a model is also a model for every ebm command (--model model.pt).\n\n"
      "Examples: ebm export --model models/fmnist-eft --out fmnist-eft.pt\n"
      "          ebm export --model models/mnist-ood.detector.json --out mnist-detector.pt");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      const bool detector = is_detector_file(model);
      if (format == "state-dict") {
        require(!detector, "--format state-dict exports a native model's weights, not a detector");
        export_state_dict(model, out);
      } else if (detector) {
        export_detector(model, out);
      } else {
        export_torchscript(model, out);
      }
      if (!c.quiet)
        std::fprintf(stderr, "exported %s -> %s (%s)\n", model.c_str(), out.c_str(),
                     detector ? "TorchScript detector" : format.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
