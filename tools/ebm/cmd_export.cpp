// ebm export --model M --out F.pt: a native model as one TorchScript file (core/export.h).
#include <cstdio>

#include "cli.h"
#include "ebm/core/export.h"

namespace ebm::cli {

void add_export(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand(
      "export",
      "Write a native model (conv-ebm, conv-classifier) as one TorchScript file that plain PyTorch loads:\n"
      "torch.jit.load(F)(x) gives the same energies [B] (or logits [B,K]) as ebmkit, the card inside");
  static std::string model, out;
  static Common c;
  sub->add_option("--model", model, "Native model folder")->required();
  sub->add_option("--out", out, "TorchScript file to write (e.g. model.pt)")->required();
  add_common(sub, c);
  sub->footer(
      "In Python:\n"
      "  m = torch.jit.load('model.pt', _extra_files={'card.json': ''})   # the card lands in the dict\n"
      "  e = m(x)          # x [B,1,28,28] in [0,1]; energies [B], or logits [B,K] for a classifier\n"
      "The file is also a model for every ebm command (--model model.pt).\n\n"
      "Example: ebm export --model models/fmnist-eft --out fmnist-eft.pt");
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      export_torchscript(model, out);
      if (!c.quiet) std::fprintf(stderr, "exported %s -> %s (TorchScript)\n", model.c_str(), out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
