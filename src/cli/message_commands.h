// `xproc put NAME VALUE` and `xproc get NAME`: a message put on a named queue, or taken
// from it, from the command line — a Value, raw bytes, or a message of the user's schema
// (given as FILE.capnp:Type, read and written as JSON by Cap'n Proto's JSON codec).
#pragma once

#include <CLI/CLI.hpp>

namespace xproc::cli {

void add_message_commands(CLI::App& app);

}  // namespace xproc::cli
