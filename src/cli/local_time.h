// Local time as the CLI prints it: log lines of long-running commands (serve, bridge)
// and the start times `ls --managers` shows.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace xproc::cli {

// `format` as strftime takes it, of the local time at `when`.
std::string local_time(std::time_t when, const char* format);

// "2026-11-25T03:04:05 " + line, written to stdout and flushed: one log line.
void log_line(const std::string& line);

}  // namespace xproc::cli
