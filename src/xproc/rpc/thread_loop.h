// This thread's kj event loop, as the Manager's client and server use it.
//
// kj allows one event loop per thread, and a loop belongs to the process that made it:
// its epoll set is shared with a forked child, so a child that tore the inherited loop
// down would unregister the parent's sockets. thread_loop() therefore makes the loop on
// first use and, in a forked child, abandons the inherited one — it closes the sockets
// the loop owned (the parent keeps its own descriptors), unregisters it as the thread's
// current loop without touching the epoll set, and leaks the rest — then makes a new one.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <unordered_set>

#include <kj/async-io.h>

#include "xproc/spin_internal.h"

namespace xproc::rpc {

class ThreadLoop {
 public:
  ThreadLoop();
  ~ThreadLoop();
  KJ_DISALLOW_COPY(ThreadLoop);

  kj::AsyncIoContext& io() noexcept { return io_; }
  kj::WaitScope& wait_scope() noexcept { return io_.waitScope; }

  // Descriptors this loop's connections own: closed in a forked child right after the
  // fork (any thread's loop), before it abandons this one.
  void own_fd(int fd);
  void disown_fd(int fd);
  void close_owned_fds() noexcept;  // only the fork handler calls this

  // Per-thread state of other layers (the client's connections), destroyed with the loop
  // in this process and leaked with it in a child.
  template <typename T>
  T& slot() {
    auto& holder = slots_[&slot_key<T>];
    if (!holder) holder = std::shared_ptr<void>(new T(), [](void* p) { delete static_cast<T*>(p); });
    return *static_cast<T*>(holder.get());
  }

  // The slot if some layer made it; nullptr otherwise.
  template <typename T>
  T* find_slot() {
    auto it = slots_.find(&slot_key<T>);
    return it == slots_.end() ? nullptr : static_cast<T*>(it->second.get());
  }

  // Forgets the loop without destroying it (see above). Only thread_loop() calls this.
  void abandon() noexcept;

  pid_t pid() const noexcept { return pid_; }

 private:
  template <typename T>
  static inline char slot_key = 0;

  pid_t pid_;
  kj::AsyncIoContext io_;
  std::unordered_set<int> owned_fds_;
  std::map<const void*, std::shared_ptr<void>> slots_;
};

// The calling thread's loop, made (or remade after fork) as needed.
ThreadLoop& thread_loop();
// The calling thread's loop if this process made one; never makes one (for destructors).
ThreadLoop* existing_thread_loop() noexcept;

// How long this thread polls for a reply before sleeping (the endpoint's spin is the
// ceiling): a reply that arrives while polling restores the full budget; one that does
// not — typically because more processes than cores are calling, so polling only takes
// the CPU from the server — halves it, and below a quarter it drops to zero. At zero,
// every 32nd call polls again for the full time, to notice when the crowd has gone.
inline constexpr detail::SpinTuning kReplySpin{.initial_ns = 0,
                                               .floor_ns = 0,
                                               .floor_divisor = 4,
                                               .off_below_floor = true,
                                               .restore_on_success = true,
                                               .probe_every = 32};
detail::AdaptiveSpin& thread_spin_budget();

// The interrupt check set by set_call_interrupt_check() (manager.h), or nullptr.
struct InterruptCheck {
  void (*check)() = nullptr;
  std::chrono::milliseconds interval{50};
};
InterruptCheck interrupt_check() noexcept;
void set_interrupt_check(void (*check)(), std::chrono::milliseconds interval);

// Waits for `promise` in slices of `interval`, calling `check` between them; an
// exception from `check` drops the promise (cancelling the call) and propagates.
template <typename T>
T wait_checking(kj::Promise<T>&& promise, kj::WaitScope& scope, const InterruptCheck& interrupt) {
  // On the heap: GCC 12 falsely reports a local captured here as uninitialized (inside
  // kj's probe of the continuation's address).
  auto result = kj::heap<kj::Maybe<T>>();
  auto settled = promise.then([slot = result.get()](T&& value) { *slot = kj::mv(value); }).fork();
  auto& timer = thread_loop().io().provider->getTimer();
  for (;;) {
    settled.addBranch().exclusiveJoin(timer.afterDelay(interrupt.interval.count() * kj::MILLISECONDS)).wait(scope);
    KJ_IF_MAYBE (value, *result) {
      return kj::mv(*value);
    }
    interrupt.check();
  }
}

// Looks at `ready()` without sleeping for up to the thread's spin budget (at most
// `spin`); true as soon as it says so. A reply that comes back within the budget costs no
// sleep and no wake-up. Each look also offers the CPU to whoever waits for one: with more
// busy processes than cores (four clients on two) that is the server the reply waits for.
// With `first` = kAfterYield the caller has just looked, so the first look waits for a yield.
enum class FirstLook { kNow, kAfterYield };
template <typename Ready>
bool ready_within_spin(std::chrono::microseconds spin, Ready&& ready, FirstLook first = FirstLook::kNow) {
  if (spin.count() <= 0) return false;
  auto& budget = thread_spin_budget();
  const int64_t ceiling = std::chrono::nanoseconds(spin).count();
  const int64_t allowed = budget.next(ceiling);
  if (allowed <= 0) return false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(allowed);
  if (first == FirstLook::kAfterYield) ::sched_yield();
  bool done = false;
  while (!(done = ready()) && std::chrono::steady_clock::now() < until) ::sched_yield();
  budget.record(done, ceiling);
  return done;
}

// Waits for `promise`, first polling it for the thread's spin budget (ready_within_spin).
template <typename T>
T wait_spinning(kj::Promise<T>&& promise, kj::WaitScope& scope, std::chrono::microseconds spin) {
  ready_within_spin(spin, [&] { return promise.poll(scope); });
  if (auto interrupt = interrupt_check(); interrupt.check != nullptr) {
    return wait_checking(kj::mv(promise), scope, interrupt);
  }
  return promise.wait(scope);
}

}  // namespace xproc::rpc
