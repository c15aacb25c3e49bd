// Implementation of process.h: fork, the child's exit path, joining through a pidfd.
#include "xproc/process.h"

#include <cxxabi.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>
#include <typeinfo>
#include <utility>

#include "xproc/errors.h"
#include "xproc/syscall_internal.h"

namespace xproc {
namespace {

// Python's naming: a process's identity is its parent's identity plus a counter.
struct Identity {
  std::string name = "MainProcess";
  std::string prefix = "Process-";  // children are named prefix + counter
  int counter = 0;
  bool is_daemon = false;
};

Identity& identity() {
  static Identity id;
  return id;
}

// Daemon children still running, terminated when this process exits normally. (A killed
// parent takes them along through PR_SET_PDEATHSIG.)
std::mutex daemons_mutex;
std::set<pid_t>& live_daemons() {
  // Never destroyed: the atexit handler that reads it may run after static destructors.
  static auto* pids = new std::set<pid_t>;
  return *pids;
}

void terminate_daemons_at_exit() {
  std::set<pid_t> pids;
  {
    std::lock_guard lock(daemons_mutex);
    pids.swap(live_daemons());
  }
  for (pid_t pid : pids) ::kill(pid, SIGTERM);
  for (pid_t pid : pids) {
    int status;
    detail::retry_on_eintr([&] { return waitpid(pid, &status, 0); });
  }
}

void register_daemon(pid_t pid) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(terminate_daemons_at_exit); });
  std::lock_guard lock(daemons_mutex);
  live_daemons().insert(pid);
}

void forget_daemon(pid_t pid) {
  std::lock_guard lock(daemons_mutex);
  live_daemons().erase(pid);
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return 255;
}

std::string demangled_type_name(const std::type_info& type) {
  int status = 0;
  char* name = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name ? name : type.name();
  std::free(name);
  return out;
}

void flush_everything() {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
}

[[noreturn]] void run_child(const std::function<void()>& target, const std::string& name) {
  int code = 0;
  try {
    target();
  } catch (const SystemExit& exit) {
    code = exit.code;
  } catch (const std::exception& e) {
    flush_everything();
    std::fprintf(stderr, "Process %s:\nTraceback (most recent call last):\n%s: %s\n", name.c_str(),
                 demangled_type_name(typeid(e)).c_str(), e.what());
    code = 1;
  } catch (...) {
    flush_everything();
    std::fprintf(stderr, "Process %s:\nunknown exception\n", name.c_str());
    code = 1;
  }
  flush_everything();
  _exit(code);
}

}  // namespace

const std::string& current_process_name() { return identity().name; }

Process::Process(std::function<void()> target, ProcessOptions options)
    : target_(std::move(target)), name_(std::move(options.name)), daemon_(options.daemon) {
  Identity& id = identity();
  const int number = ++id.counter;
  if (name_.empty()) name_ = id.prefix + std::to_string(number);
}

Process::Process(Process&& other) noexcept
    : target_(std::move(other.target_)),
      name_(std::move(other.name_)),
      daemon_(other.daemon_),
      pid_(std::exchange(other.pid_, 0)),
      pidfd_(std::move(other.pidfd_)),
      exitcode_(other.exitcode_) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    release();
    target_ = std::move(other.target_);
    name_ = std::move(other.name_);
    daemon_ = other.daemon_;
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
    exitcode_ = other.exitcode_;
  }
  return *this;
}

Process::~Process() { release(); }

void Process::release() noexcept {
  if (pid_ > 0 && !exitcode_) {
    try {
      if (daemon_) {
        ::kill(pid_, SIGTERM);
        join(std::chrono::seconds(1));
        if (!exitcode_) {
          ::kill(pid_, SIGKILL);
          reap(true);
        }
      } else {
        reap(true);
      }
    } catch (...) {
      // Destructors never throw; the child is gone or was reaped by someone else.
    }
  }
  pidfd_.reset();
}

Process& Process::start() {
  if (pid_ != 0) throw ValueError("cannot start a process twice");
  if (identity().is_daemon) throw ValueError("daemonic processes are not allowed to have children");
  flush_everything();  // the child must not inherit (and later re-flush) buffered output
  const std::string child_prefix = name_ + ":";
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw_os_error("fork", errno);
  if (pid == 0) {
    if (daemon_) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(0);  // the parent died before prctl took effect
    }
    Identity& id = identity();
    id.name = name_;
    id.prefix = child_prefix;
    id.counter = 0;
    id.is_daemon = daemon_;
    {
      std::lock_guard lock(daemons_mutex);
      live_daemons().clear();  // the parent's daemons are not ours to terminate
    }
    run_child(target_, name_);
  }
  pid_ = pid;
  pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));  // none on old kernels: we poll
  if (daemon_) register_daemon(pid);
  return *this;
}

bool Process::reap(bool block) {
  if (exitcode_) return true;
  int status = 0;
  const pid_t r = detail::retry_on_eintr([&] { return waitpid(pid_, &status, block ? 0 : WNOHANG); });
  if (r == pid_) {
    exitcode_ = decode_status(status);
  } else if (r == 0) {
    return false;
  } else if (errno == ECHILD) {
    // Someone else (a SIGCHLD handler, waitpid(-1)) reaped it: the code is unknowable.
    exitcode_ = 255;
  } else {
    throw_os_error("waitpid", errno);
  }
  if (daemon_) forget_daemon(pid_);
  return true;
}

void Process::join() {
  if (pid_ == 0) throw ValueError("can only join a started process");
  reap(true);
}

void Process::join(std::chrono::duration<double> timeout) {
  if (pid_ == 0) throw ValueError("can only join a started process");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reap(false)) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    const int ms = static_cast<int>(std::ceil(std::chrono::duration<double, std::milli>(left).count()));
    if (pidfd_) {
      // Readable when the child exits. A wait with a deadline: after EINTR the loop comes
      // round and waits for what is left.
      pollfd fd{pidfd_.get(), POLLIN, 0};
      ::poll(&fd, 1, ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 5)));
    }
  }
}

bool Process::is_alive() {
  if (pid_ == 0) return false;
  return !reap(false);
}

void Process::terminate() {
  if (pid_ > 0 && !exitcode_) ::kill(pid_, SIGTERM);
}

void Process::kill() {
  if (pid_ > 0 && !exitcode_) ::kill(pid_, SIGKILL);
}

}  // namespace xproc
