// See mutex.h.
#include "xproc/shm/mutex.h"

#include <algorithm>
#include <chrono>

namespace xproc::shm {
namespace {

using detail::Clock;

// Holders keep the mutex for well under a microsecond, while sleeping in the kernel and
// being woken costs ~20 us: look again for a while before sleeping.
constexpr int kSpinTries = 2000;
// How often a sleeping waiter wakes to ask the kernel whether the owner is still alive (an
// owner that dies wakes nobody).
constexpr auto kOwnerCheckEvery = std::chrono::milliseconds(50);

}  // namespace

MutexLock::Outcome MutexLock::lock_contended(std::atomic<uint32_t>& word, const Holder& holder,
                                             const Deadline& deadline) {
  const uint32_t token = holder.token();
  for (int i = 0; i < kSpinTries; ++i) {
    uint32_t seen = word.load(std::memory_order_relaxed);
    if (seen == 0 && word.compare_exchange_weak(seen, token, std::memory_order_acquire, std::memory_order_relaxed)) {
      return Outcome::kLocked;
    }
    detail::cpu_relax();
  }
  // A deadline at the clock's epoch is a call that must not wait (see ByteQueue::deadline).
  const bool no_wait = deadline && *deadline == Clock::time_point{};
  Clock::time_point next_owner_check{};  // at once
  for (;;) {
    uint32_t seen = word.load(std::memory_order_relaxed);
    if (seen == 0) {
      // Others may be asleep, so whoever takes it after sleeping keeps the sleepers bit
      // (one spare wake-up at most) rather than strand them.
      if (word.compare_exchange_weak(seen, token | kSleepers, std::memory_order_acquire, std::memory_order_relaxed)) {
        return Outcome::kLocked;
      }
      continue;
    }
    const auto now = Clock::now();
    const uint32_t owner = seen & ~kSleepers;
    if (owner != token && now >= next_owner_check) {
      if (!holder.alive(owner)) {
        // Dead (or a value no holder has: something scribbled on the word). Of several
        // waiters that find so, the exchange lets one take over.
        if (word.compare_exchange_strong(seen, token | kSleepers, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return Outcome::kOwnerDied;
        }
        continue;
      }
      next_owner_check = now + kOwnerCheckEvery;
    }
    if (no_wait || (deadline && now >= *deadline)) return Outcome::kTimedOut;
    if ((seen & kSleepers) == 0 &&
        !word.compare_exchange_weak(seen, seen | kSleepers, std::memory_order_relaxed, std::memory_order_relaxed)) {
      continue;
    }
    Clock::time_point wake_at = now + kOwnerCheckEvery;
    if (deadline) wake_at = std::min(wake_at, *deadline);
    detail::futex_wait(&word, seen | kSleepers, wake_at);
  }
}

void MutexLock::wake_one(std::atomic<uint32_t>& word) noexcept { detail::futex_wake_one(&word); }

bool held_by_live_owner(const std::atomic<uint32_t>& word, const Holder& holder) noexcept {
  const uint32_t owner = word.load(std::memory_order_acquire) & ~kSleepers;
  return owner != 0 && holder.alive(owner);
}

}  // namespace xproc::shm
