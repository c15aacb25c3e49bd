// Helpers shared by every test binary: unique resource names, and waiting for a forked
// child's verdict. The global leak check lives in test_main.cpp.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace xproc::testing {

// A segment/socket name no other test (in this or any concurrent test binary) uses:
// "t<pid>-<tag>-<counter>". The leak check looks for names with this process's prefix.
std::string unique_name(const std::string& tag);

// The prefix every unique_name() of this process starts with.
std::string name_prefix();

// /dev/shm/xproc.* entries whose name carries this process's prefix.
std::vector<std::string> leaked_segments();

// Pids of this process's children (zombies included), read from /proc.
std::vector<pid_t> child_pids();

// Runs `command` through the shell; returns (exit status as pclose gives it, stdout).
std::pair<int, std::string> run_command(const std::string& command);

// `capnp decode` of the Value message in the file at `path` (schema/xproc/value.capnp):
// (exit status, what it printed, stderr included).
std::pair<int, std::string> capnp_decode_value(const std::string& path);

// The project's venv interpreter (it has pycapnp): $XPROC_VENV/bin/python, else
// <source>/.venv/bin/python.
std::string venv_python();

// The path of tests/interop/<name>.
std::string interop_script(const std::string& name);

// Waits for `pid` and returns its exit status decoded as Python does: the exit code, or
// minus the signal number that killed it.
int wait_exit_code(pid_t pid);

}  // namespace xproc::testing
