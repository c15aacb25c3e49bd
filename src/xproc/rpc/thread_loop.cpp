// See thread_loop.h.
#include "xproc/rpc/thread_loop.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>

namespace xproc::rpc {
namespace {

// This process's pid, kept current by a fork handler: thread_loop() runs on every call,
// and getpid() is a system call.
std::atomic<pid_t> g_pid{::getpid()};
void note_forked_child() { g_pid.store(::getpid(), std::memory_order_relaxed); }
const int g_fork_handler = ::pthread_atfork(nullptr, nullptr, note_forked_child);
pid_t current_pid() { return g_pid.load(std::memory_order_relaxed); }

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

ThreadLoop::ThreadLoop() : pid_(current_pid()), io_(kj::setupAsyncIo()) {}

ThreadLoop::~ThreadLoop() {
  // Connections (in slots) go before the loop they run on.
  slots_.clear();
}

void ThreadLoop::abandon() noexcept {
  for (int fd : owned_fds_) ::close(fd);
  owned_fds_.clear();
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

std::chrono::nanoseconds SpinBudget::next(std::chrono::nanoseconds limit) {
  if (budget_.count() < 0 || budget_ > limit) budget_ = limit;
  if (budget_.count() > 0) return budget_;
  if (++calls_at_zero_ % 32 == 0) return limit;  // look again: maybe the crowd left
  return std::chrono::nanoseconds(0);
}

void SpinBudget::record(bool reply_came_while_polling, std::chrono::nanoseconds limit) {
  if (reply_came_while_polling) {
    budget_ = limit;
  } else {
    budget_ /= 2;
    if (budget_ < limit / 4) budget_ = std::chrono::nanoseconds(0);
  }
}

SpinBudget& thread_spin_budget() {
  thread_local SpinBudget budget;
  return budget;
}

}  // namespace xproc::rpc
