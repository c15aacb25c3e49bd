// A mutex in shared memory for processes that must survive each other's deaths and cannot
// trust each other's writes: one 32-bit word and nothing else.
//
// Why not a robust pthread mutex: glibc links the robust mutexes a thread holds into a list
// through pointers stored inside the mutexes, and follows them on unlock. Another process
// that writes into a mutex we hold can make our unlock write wherever it likes. Here the
// word holds the owner's holder token (shm/holders.h), never an address, so a scribbler can
// make it look held or free, and nothing more. Likewise the holder's death is recognised by
// the kernel's lock on its token, not by a list the holder keeps in its own memory.
//
// The word: 0 when free; otherwise the owner's token, with kSleepers set while others may
// be asleep on it (FUTEX_WAIT on the word, shared). Every wait has the caller's deadline.
#pragma once

#include <atomic>
#include <cstdint>

#include "xproc/shm/holders.h"
#include "xproc/sync_internal.h"

namespace xproc::shm {

inline constexpr uint32_t kSleepers = uint32_t{1} << 31;
static_assert(kSleepers == kTokenLimit, "tokens must leave the sleepers bit free");
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Holds the mutex `word` of a segment held by `holder` for its scope, if it could be had by
// `deadline`. A deadline equal to the clock's epoch means "do not wait": only a short spin
// (holders keep these mutexes for well under a microsecond). Safe across threads and processes.
class MutexLock {
 public:
  MutexLock(std::atomic<uint32_t>& word, const Holder& holder, const Deadline& deadline) : word_(&word) {
    uint32_t expected = 0;
    if (word.compare_exchange_strong(expected, holder.token(), std::memory_order_acquire, std::memory_order_relaxed)) {
      return;
    }
    outcome_ = lock_contended(word, holder, deadline);
    if (outcome_ == Outcome::kTimedOut) word_ = nullptr;
  }
  ~MutexLock() { unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // False when the deadline passed first.
  bool locked() const noexcept { return word_ != nullptr; }
  // The previous owner died holding it: what it protects is whatever that owner last
  // published, which the structures using this mutex keep valid at every instant.
  bool owner_died() const noexcept { return outcome_ == Outcome::kOwnerDied; }

  void unlock() noexcept {
    if (word_ == nullptr) return;
    if (word_->exchange(0, std::memory_order_release) & kSleepers) wake_one(*word_);
    word_ = nullptr;
  }

 private:
  enum class Outcome { kLocked, kOwnerDied, kTimedOut };
  static Outcome lock_contended(std::atomic<uint32_t>& word, const Holder& holder, const Deadline& deadline);
  static void wake_one(std::atomic<uint32_t>& word) noexcept;

  std::atomic<uint32_t>* word_;
  Outcome outcome_ = Outcome::kLocked;
};

// Whether `word` is held by a live owner (a process holding the segment, or this one).
bool held_by_live_owner(const std::atomic<uint32_t>& word, const Holder& holder) noexcept;

}  // namespace xproc::shm
