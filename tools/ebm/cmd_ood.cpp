// ebm ood eval | calibrate | predict  (being implemented; see issue 4)
#include "cli.h"

namespace ebm::cli {

void add_ood(CLI::App& app, Action& run) {}

}  // namespace ebm::cli
