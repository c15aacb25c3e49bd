// `xproc serve`: a standalone Manager server.
#pragma once

#include <CLI/CLI.hpp>

namespace xproc::cli {

// Adds the subcommand to `app`; it runs when the command line selects it.
void add_serve_command(CLI::App& app);

}  // namespace xproc::cli
