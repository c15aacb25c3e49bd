// `xproc watch NAME`: a named queue's puts and gets per second, depth and holders, sampled
// at an interval.
#pragma once

#include <CLI/CLI.hpp>

namespace xproc::cli {

void add_watch_command(CLI::App& app);

}  // namespace xproc::cli
