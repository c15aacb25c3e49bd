// `xproc bench [TOPIC]`: the side-by-side comparison harness (what `./dev.sh bench` runs).
#pragma once

#include <CLI/CLI.hpp>

namespace xproc::cli {

void add_bench_command(CLI::App& app);

}  // namespace xproc::cli
