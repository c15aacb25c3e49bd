// Cross-process synchronisation primitives for structures in shared memory: futex
// wait/wake on a 32-bit word, and a robust process-shared mutex whose holder's death is
// reported to the next locker instead of hanging it.
#pragma once

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>

#include "xproc/errors.h"

namespace xproc::detail {

using Clock = std::chrono::steady_clock;
using Deadline = std::optional<Clock::time_point>;  // nullopt = wait forever

// Sleeps while *word == expected, until woken or the deadline passes (shared futex: works
// across processes mapping the same page). Spurious returns are fine: callers re-check.
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

inline void futex_wake_all(const void* word) {
  syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Initialises a robust, process-shared mutex in place (in a fresh segment).
inline void init_robust_mutex(pthread_mutex_t* mutex) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw_os_error("pthread_mutex_init", rc);
}

// Scoped lock on a robust mutex. When the previous holder died holding it, the lock is
// made consistent and `owner_died()` is true: the caller's protected state is whatever
// that holder last published, which the queue's design keeps valid at every instant.
class RobustLock {
 public:
  explicit RobustLock(pthread_mutex_t* mutex) : mutex_(mutex) {
    // Holders keep the lock for well under a microsecond, while sleeping in the kernel and
    // being woken costs ~20 us: try for a short while before blocking.
    int rc = EBUSY;
    for (int i = 0; i < kSpinTries && rc == EBUSY; ++i) {
      rc = pthread_mutex_trylock(mutex_);
      if (rc == EBUSY) cpu_relax();
    }
    if (rc == EBUSY) rc = pthread_mutex_lock(mutex_);
    if (rc == EOWNERDEAD) {
      owner_died_ = true;
      pthread_mutex_consistent(mutex_);
    } else if (rc != 0) {
      throw_os_error("pthread_mutex_lock", rc);
    }
  }
  ~RobustLock() { unlock(); }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;

  void unlock() noexcept {
    if (mutex_) pthread_mutex_unlock(mutex_);
    mutex_ = nullptr;
  }
  bool owner_died() const noexcept { return owner_died_; }

 private:
  static constexpr int kSpinTries = 2000;
  pthread_mutex_t* mutex_;
  bool owner_died_ = false;
};

}  // namespace xproc::detail
