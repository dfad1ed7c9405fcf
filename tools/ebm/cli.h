// cli.h: what every `ebm` subcommand shares: common flags, JSON output, the
// registration signature. Subcommands stay thin: parse, call the library, report.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "ebm/compose/quality.h"
#include "ebm/core/annealed.h"
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
/// Before a command with several outputs does any work: check that a file can
/// be created at each path (as write_file_atomic would: a temp file beside it,
/// removed again), so that a bad last output cannot fail after the first ones
/// replaced what was there. "" and "-" (stdout) are skipped. Throws DataError.
void check_outputs(const std::vector<std::string>& paths);
/// Exit with a usage error unless `cond`.
void require(bool cond, const std::string& message);
/// The command line as one string, for model cards and reports.
const std::string& command_line();
/// The two header lines of a text or Markdown report: "command: <command_line()>"
/// and "models: <path> <sha256>, ..." (model_hash of each path), then a blank line.
std::string provenance_header(const std::vector<std::string>& model_paths);
void set_command_line(int argc, char** argv);

/// Bind the shared sampler's flags to `o`; the defaults shown are o's values,
/// i.e. those of the library struct `o` belongs to. `prefix` names the flags:
/// "" gives --steps, --step-size, --noise, --grad-clip, --step-schedule,
/// --noise-schedule; "purify-" gives --purify-steps, ...
void add_langevin_flags(CLI::App* sub, LangevinOptions& o, const std::string& prefix = "",
                        const std::string& group = "");
/// Bind the annealed sampler's flags to `o` (--sigma-max, --sigma-min, --levels,
/// --steps-per-level, --epsilon, --corrector) and `method` to --sampler
/// (auto | langevin | annealed); defaults shown are the structs'.
void add_annealed_flags(CLI::App* sub, AnnealedOptions& o, std::string& method, const std::string& group = "");
/// Bind --frechet/--no-frechet, --frechet-n, --frechet-draws and --knn/--no-knn to `o`
/// (ebm compose eval, ebm sample --judge); defaults shown are o's.
void add_quality_flags(CLI::App* sub, QualityOptions& o);
/// A schedule flag ("constant", "geometric:0.1", ...) parsed into `target`;
/// its default shown is target's.
CLI::Option* add_schedule_flag(CLI::App* sub, const std::string& flag, Schedule& target, const std::string& help);
/// The sampler keys ("steps", "step_size", ...) whose flags were given on the
/// command line, for library functions that fill the others from a model card.
/// Includes the annealed keys ("sigma_max", ..., and "method" for --sampler).
std::set<std::string> given_langevin_keys(const CLI::App* sub, const std::string& prefix = "");

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
void add_model_eval(CLI::App& app, Action& run);
void add_compose(CLI::App& app, Action& run);
void add_ood(CLI::App& app, Action& run);
void add_defend(CLI::App& app, Action& run);
void add_serve(CLI::App& app, Action& run);
void add_export(CLI::App& app, Action& run);
void add_launch(CLI::App& app, Action& run);

}  // namespace ebm::cli
