// `xproc bridge out QUEUE --subject S` and `xproc bridge in QUEUE --stream S --consumer D`:
// a local named queue forwarded to a NATS JetStream cluster, or a stream forwarded into one
// (xproc/nats/bridge.h), in the foreground until SIGINT or SIGTERM. Built only with
// xproc::nats (XPROC_HAVE_NATS).
#pragma once

#include <CLI/CLI.hpp>

namespace xproc::cli {

// Adds `bridge` and its `out` and `in` subcommands to `app`.
void add_bridge_command(CLI::App& app);

}  // namespace xproc::cli
