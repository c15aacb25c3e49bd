// See thread_loop.h.
#include "xproc/rpc/thread_loop.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_set>

namespace xproc::rpc {
namespace {

// This process's pid, kept current by a fork handler: thread_loop() runs on every call,
// and getpid() is a system call.
std::atomic<pid_t> g_pid{::getpid()};
pid_t current_pid() { return g_pid.load(std::memory_order_relaxed); }

// Every thread's loop in this process. A forked child closes the sockets they own at once,
// not when it first calls: it never uses them, and a copy it kept open would keep the
// parent's connections alive after the parent died — the server would not release the
// parent's locks while the child lived. The mutex also guards each loop's owned_fds_.
std::mutex g_loops_mutex;
std::unordered_set<ThreadLoop*>& loops() {
  static auto* all = new std::unordered_set<ThreadLoop*>();  // never destroyed: used at exit
  return *all;
}
void before_fork() { g_loops_mutex.lock(); }
void after_fork_in_parent() { g_loops_mutex.unlock(); }
void after_fork_in_child() {
  g_pid.store(::getpid(), std::memory_order_relaxed);
  for (ThreadLoop* loop : loops()) loop->close_owned_fds();
  loops().clear();  // they belong to the parent; thread_loop() abandons this thread's
  g_loops_mutex.unlock();
}
const int g_fork_handler = ::pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);

// Raw on purpose: an inherited loop is abandoned, never freed.
thread_local ThreadLoop* t_loop = nullptr;

// Frees this thread's loop when the thread exits (in the process that made it).
struct LoopReaper {
  ~LoopReaper() {
    if (t_loop != nullptr && t_loop->pid() == current_pid()) delete t_loop;
    t_loop = nullptr;
  }
};
thread_local LoopReaper t_reaper;

std::atomic<void (*)()> g_interrupt_check{nullptr};
std::atomic<int64_t> g_interrupt_interval_ms{50};

}  // namespace

InterruptCheck interrupt_check() noexcept {
  return InterruptCheck{g_interrupt_check.load(std::memory_order_relaxed),
                        std::chrono::milliseconds(g_interrupt_interval_ms.load(std::memory_order_relaxed))};
}

void set_interrupt_check(void (*check)(), std::chrono::milliseconds interval) {
  g_interrupt_interval_ms.store(std::max<int64_t>(1, interval.count()), std::memory_order_relaxed);
  g_interrupt_check.store(check, std::memory_order_relaxed);
}

ThreadLoop::ThreadLoop() : pid_(current_pid()), io_(kj::setupAsyncIo()) {
  std::lock_guard<std::mutex> guard(g_loops_mutex);
  loops().insert(this);
}

ThreadLoop::~ThreadLoop() {
  // Connections (in slots) go before the loop they run on.
  slots_.clear();
  std::lock_guard<std::mutex> guard(g_loops_mutex);
  loops().erase(this);
}

void ThreadLoop::own_fd(int fd) {
  std::lock_guard<std::mutex> guard(g_loops_mutex);
  owned_fds_.insert(fd);
}

void ThreadLoop::disown_fd(int fd) {
  std::lock_guard<std::mutex> guard(g_loops_mutex);
  owned_fds_.erase(fd);
}

void ThreadLoop::close_owned_fds() noexcept {
  // Raw close() on purpose: in a forked child, of descriptors whose owners (the connections'
  // transports) the child abandons with the loop and never destroys. Only the numbers are
  // known here; nothing else will close them.
  for (int fd : owned_fds_) ::close(fd);
  owned_fds_.clear();
}

void ThreadLoop::abandon() noexcept {
  // Its sockets were closed right after the fork (after_fork_in_child).
  // Unregisters the loop as this thread's current one (what ~WaitScope does), leaving its
  // epoll set, which the parent still uses, alone. The loop itself is leaked.
  io_.waitScope.~WaitScope();
}

ThreadLoop& thread_loop() {
  (void)&t_reaper;  // odr-use: make sure the reaper exists for this thread
  (void)g_fork_handler;
  if (t_loop != nullptr && t_loop->pid() != current_pid()) {
    t_loop->abandon();
    t_loop = nullptr;
  }
  if (t_loop == nullptr) t_loop = new ThreadLoop();
  return *t_loop;
}

ThreadLoop* existing_thread_loop() noexcept {
  return t_loop != nullptr && t_loop->pid() == current_pid() ? t_loop : nullptr;
}

detail::AdaptiveSpin& thread_spin_budget() {
  thread_local detail::AdaptiveSpin budget(kReplySpin);
  return budget;
}

}  // namespace xproc::rpc
