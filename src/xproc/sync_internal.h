// Cross-process synchronisation primitives for structures in shared memory: futex
// wait/wake on a 32-bit word (the mutex built on them is shm/mutex.h).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>

#include "xproc/errors.h"
#include "xproc/timeout.h"

namespace xproc::detail {

using Clock = std::chrono::steady_clock;

// Sleeps while *word == expected, until woken or the deadline passes (shared futex: works
// across processes mapping the same page). Spurious returns are fine: callers re-check.
// EINTR is one, and is not retried here: each caller loops, and its next round computes
// what is left of its deadline again.
inline void futex_wait(const void* word, uint32_t expected, const Deadline& deadline) {
  timespec relative{};
  timespec* timeout = nullptr;
  if (deadline) {
    const auto left = *deadline - Clock::now();
    if (left <= Clock::duration::zero()) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    relative.tv_sec = ns / 1000000000;
    relative.tv_nsec = ns % 1000000000;
    timeout = &relative;  // FUTEX_WAIT's relative timeout runs on CLOCK_MONOTONIC
  }
  syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout, nullptr, 0);
}

// The longest a waiter sleeps before looking again. A waker SIGKILLed between clearing a
// sleeper flag and its futex wake leaves the sleepers it announced asleep while the change
// it published is there to be seen; bounded sleeps notice it within this. An idle waiter
// pays a few system calls a second for it.
inline constexpr auto kLongestSleep = std::chrono::milliseconds(200);

// `deadline`, or kLongestSleep from now if that is sooner.
inline Deadline bounded_sleep(const Deadline& deadline) {
  const auto cap = Clock::now() + kLongestSleep;
  return deadline && *deadline < cap ? deadline : Deadline(cap);
}

inline void futex_wake_all(const void* word) { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

inline void futex_wake_one(const void* word) { syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0); }

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace xproc::detail
