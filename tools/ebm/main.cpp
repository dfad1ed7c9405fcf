// ebm: the command-line front end of ebmkit.
#include <cstdio>
#include <cstdlib>

#include "cli.h"
#include "ebm/core/allocator.h"
#include "ebm/core/common.h"

int main(int argc, char** argv) {
  using namespace ebm;
  tune_allocator();  // allocator.h: keeps the loops' buffers out of the kernel
  cli::set_command_line(argc, argv);
  CLI::App app;
  cli::Action run;
  cli::build_app(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "ebm: error: %s (see `ebm --help`)\n", e.what());
    return 2;
  } catch (const UsageError& e) {  // a subcommand's callback checks its flags while parsing
    std::fprintf(stderr, "ebm: error: %s\n", e.what());
    return 2;
  }
  if (!blas_is_openblas() && !std::getenv("EBM_ALLOW_REFERENCE_BLAS")) {
    std::fprintf(stderr,
                 "ebm: error: LibTorch is running on the reference BLAS (~10x slower). Run scripts/setup "
                 "to select OpenBLAS, or set EBM_ALLOW_REFERENCE_BLAS=1 to proceed anyway.\n");
    return 1;
  }
  try {
    return run ? run() : 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "ebm: error: %s\n", e.what());
    return 2;
  } catch (const DataError& e) {
    std::fprintf(stderr, "ebm: error: %s\n", e.what());
    return 1;
  } catch (const DivergenceError& e) {
    std::fprintf(stderr, "ebm: diverged: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    msg = msg.substr(0, msg.find('\n'));
    std::fprintf(stderr, "ebm: error: %s\n", msg.c_str());
    return 1;
  } catch (const std::exception& e) {  // not ebmkit's own: its first line only, as for c10::Error
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    std::fprintf(stderr, "ebm: error: %s\n", msg.c_str());
    return 1;
  }
}
