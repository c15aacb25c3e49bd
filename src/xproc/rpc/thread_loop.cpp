// See thread_loop.h.
#include "xproc/rpc/thread_loop.h"

#include <unistd.h>

#include <memory>

namespace xproc::rpc {
namespace {

// Raw on purpose: an inherited loop is abandoned, never freed.
thread_local ThreadLoop* t_loop = nullptr;

// Frees this thread's loop when the thread exits (in the process that made it).
struct LoopReaper {
  ~LoopReaper() {
    if (t_loop != nullptr && t_loop->pid() == getpid()) delete t_loop;
    t_loop = nullptr;
  }
};
thread_local LoopReaper t_reaper;

}  // namespace

ThreadLoop::ThreadLoop() : pid_(getpid()), io_(kj::setupAsyncIo()) {}

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
  if (t_loop != nullptr && t_loop->pid() != getpid()) {
    t_loop->abandon();
    t_loop = nullptr;
  }
  if (t_loop == nullptr) t_loop = new ThreadLoop();
  return *t_loop;
}

}  // namespace xproc::rpc
