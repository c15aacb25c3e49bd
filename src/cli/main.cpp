// The `xproc` command: one subcommand a file (serve_command.cpp, ...).
#include <iostream>

#include <CLI/CLI.hpp>

#include "bench_command.h"
#ifdef XPROC_HAVE_NATS
#include "bridge_command.h"
#endif
#include "message_commands.h"
#include "printable.h"
#include "segment_commands.h"
#include "serve_command.h"
#include "watch_command.h"
#include "xproc/errors.h"
#include "xproc/version.h"

int main(int argc, char** argv) {
  CLI::App app{"xproc: processes messaging in any language"};
  app.set_version_flag("--version", "xproc " XPROC_VERSION_STRING);
  app.require_subcommand(1);
  xproc::cli::add_serve_command(app);
  xproc::cli::add_segment_commands(app);
  xproc::cli::add_message_commands(app);
  xproc::cli::add_watch_command(app);
  xproc::cli::add_bench_command(app);
#ifdef XPROC_HAVE_NATS
  xproc::cli::add_bridge_command(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const xproc::Error& e) {
    std::cerr << "xproc: " << xproc::cli::printable(e.what()) << "\n";
    return 1;
  }
  return 0;
}
