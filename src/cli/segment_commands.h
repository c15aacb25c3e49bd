// `xproc ls`, `xproc stat NAME`, `xproc rm NAME`, `xproc cleanup`: seeing and cleaning the
// shared-memory queues on this machine. Tables for people, `--json` for scripts.
#pragma once

#include <CLI/CLI.hpp>

namespace xproc::cli {

void add_segment_commands(CLI::App& app);

}  // namespace xproc::cli
