// xproc::Process: multiprocessing.Process for C++ — a callable run in a fork()ed child.
//
// Objects made before start() (anonymous queues, pipes, Manager proxies) are inherited by
// the child, as in Python's fork start method. The child runs the target and leaves with
// _exit(): it never runs the parent's atexit handlers or static destructors, and the
// parent's buffered output is flushed before the fork so it is never printed twice.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "xproc/fd.h"

namespace xproc {

// Thrown inside a target to leave the child with a chosen exit code and no traceback,
// as Python's sys.exit(code).
struct SystemExit {
  int code = 0;
};

// How a Process is made: its name, and whether it is a daemon.
struct ProcessOptions {
  // Defaults to "Process-N" (N counts the processes this process has created, from 1); in
  // a child, names continue Python's way: "Process-2:1" is the first child of Process-2.
  std::string name;
  // A daemon is terminated when its parent exits (even by SIGKILL), and may not have
  // children of its own.
  bool daemon = false;
};

// Move-only. One thread at a time may use a Process object.
class Process {
 public:
  // A process that will run `target` (kept in this object) once start() is called;
  // nothing is forked yet.
  explicit Process(std::function<void()> target, ProcessOptions options = {});
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // A started process that was not joined: a daemon is terminated (SIGTERM, then SIGKILL
  // after a grace period) and reaped; a non-daemon is waited for, as Python waits for
  // non-daemonic children at exit. Never throws.
  ~Process();

  // Forks and runs the target in the child; returns at once in the parent. In the child,
  // an exception escaping the target prints "Process <name>:" and the error to stderr and
  // exits 1; SystemExit{n} exits n. Throws ValueError when started twice, or when a daemon
  // tries to start a child; OSError when fork fails.
  Process& start();

  // Blocks until the child exits (reaping it). With a timeout, returns when it runs out
  // whether or not the child exited: check is_alive(). ValueError if never started.
  void join();
  void join(std::chrono::duration<double> timeout);

  // True between start() and the child's exit (reaps it when it has exited).
  bool is_alive();
  // Exit code once exited: the code passed to exit, or -N when killed by signal N; nullopt
  // before start and while running.
  std::optional<int> exitcode() const noexcept { return exitcode_; }
  // 0 before start.
  pid_t pid() const noexcept { return pid_; }
  const std::string& name() const noexcept { return name_; }
  bool daemon() const noexcept { return daemon_; }

  // SIGTERM / SIGKILL the child (no-op once it has been reaped).
  void terminate();
  void kill();

 private:
  bool reap(bool block);  // true once the child has been reaped
  void release() noexcept;

  std::function<void()> target_;
  std::string name_;
  bool daemon_ = false;
  pid_t pid_ = 0;
  Fd pidfd_;
  std::optional<int> exitcode_;
};

// This process's name: "MainProcess" in the parent, the Process name in a child.
const std::string& current_process_name();

}  // namespace xproc
