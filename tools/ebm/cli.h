// cli.h: what every `ebm` subcommand shares: common flags, JSON output, the
// registration signature. Subcommands stay thin: parse, call the library, report.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "ebm/core/langevin.h"

namespace ebm::cli {

using json = nlohmann::json;
/// The action a parsed subcommand will run; returns the exit code.
using Action = std::function<int()>;

/// Flags every command takes.
struct Common {
  int threads = 0;        // 0 = all cores
  uint64_t seed = 0;
  std::string json_out;   // "" = none, "-" = stdout
  bool quiet = false;
};

/// Add --threads, --seed, --quiet (and --json when `with_json`) to `sub`.
void add_common(CLI::App* sub, Common& c, bool with_json = false);
/// Apply the common flags (thread count, quiet progress).
void apply_common(const Common& c);
/// Write `j` to `where`: "-" prints to stdout, a path is written atomically.
void write_json(const std::string& where, const json& j);
/// Exit with a usage error unless `cond`.
void require(bool cond, const std::string& message);
/// The command line as one string, for model cards and reports.
const std::string& command_line();
void set_command_line(int argc, char** argv);

/// Flags of the shared sampler, reused by every command that samples.
struct SamplerFlags {
  int64_t steps = 200;
  double step_size = 10.0, noise = 0.005, grad_clip = 0.03;
  std::string step_schedule = "constant", noise_schedule = "constant";
  void add(CLI::App* sub) {
    sub->add_option("--steps", steps, "Langevin steps")->capture_default_str();
    sub->add_option("--step-size", step_size, "Gradient step size")->capture_default_str();
    sub->add_option("--noise", noise, "Noise std per step (separate from step size)")->capture_default_str();
    sub->add_option("--grad-clip", grad_clip, "Cap on |grad E| per pixel per step (0 = off)")->capture_default_str();
    sub->add_option("--step-schedule", step_schedule, "constant | linear:F | cosine:F | geometric:F")->capture_default_str();
    sub->add_option("--noise-schedule", noise_schedule, "Same forms as --step-schedule")->capture_default_str();
  }
  LangevinOptions options(uint64_t seed) const {
    return LangevinOptions()
        .steps(steps)
        .step_size(step_size)
        .noise(noise)
        .grad_clip(grad_clip)
        .step_schedule(Schedule::parse(step_schedule))
        .noise_schedule(Schedule::parse(noise_schedule))
        .seed(seed);
  }
};

/// Register every subcommand on `app` (the whole `ebm` CLI). Each parsed
/// subcommand stores its action in `run`. Flags bind to library options
/// structs, so the CLI's defaults are the library's (tests/test_cli_defaults*.cpp).
void build_app(CLI::App& app, Action& run);

// One registration function per subcommand file.
void add_data(CLI::App& app, Action& run);
void add_info(CLI::App& app, Action& run);
void add_sample(CLI::App& app, Action& run);
void add_denoise(CLI::App& app, Action& run);
void add_inpaint(CLI::App& app, Action& run);
void add_train(CLI::App& app, Action& run);
void add_compose(CLI::App& app, Action& run);
void add_ood(CLI::App& app, Action& run);
void add_defend(CLI::App& app, Action& run);

}  // namespace ebm::cli
