// ebm info --model MODEL
#include <cstdio>

#include "cli.h"
#include "ebm/core/models.h"

namespace ebm::cli {

void add_info(CLI::App& app, Action& run) {
  auto* sub = app.add_subcommand("info", "Describe a model: architecture, card, parameter count");
  static std::string model;
  static Common c;
  sub->add_option("--model", model, "Native model folder or TorchScript file")->required();
  add_common(sub, c, true);
  sub->callback([&run] {
    run = [] {
      apply_common(c);
      auto e = load_model(model);
      json card = load_card(model);
      int64_t nparam = 0;
      for (auto& p : e->parameters()) nparam += p.numel();
      card["describe"] = e->describe();
      card["parameters"] = nparam;
      card["num_classes"] = e->num_classes();
      if (c.json_out.empty()) std::printf("%s", card.dump(2).append("\n").c_str());
      write_json(c.json_out, card);
      return 0;
    };
  });
}

}  // namespace ebm::cli
