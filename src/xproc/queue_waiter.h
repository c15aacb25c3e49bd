// Waiting for a queue in an event loop (epoll, kj, asio, asyncio), without a thread.
//
// A QueueWaiter gives a descriptor that becomes readable when what it waits for may have
// happened: a message put, room made in a bounded queue, or every task done. It is a
// doorbell (shm/doorbells.h) registered in the queue's segment, so a waiter in any
// process that opened the queue, by name or as inherited, is rung; a producer pays for it
// only when it wakes sleepers anyway. Its pattern:
//
//   xproc::QueueWaiter waiter(queue, xproc::QueueWaiter::For::kMessage);
//   for (;;) {
//     if (queue.get_in_place(consume, /*block=*/false)) break;
//     if (!waiter.arm()) continue;          // it changed meanwhile: try again now
//     poll for waiter.fileno() readable, at most QueueWaiter::kRecheck;
//     waiter.clear();
//   }
//
// A waiter never takes a message: dropping one mid-wait loses nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "xproc/byte_queue.h"

namespace xproc {

namespace shm {
class Doorbell;
}

// One waiter for one kind of change of one queue. Move-only; one thread at a time.
class QueueWaiter {
 public:
  // What the waiter is rung for.
  enum class For : uint32_t {
    kMessage = 0,  // get: a message was put
    kRoom = 1,     // put: a get made room (a bounded queue that was full)
    kJoin = 2,     // join: task_done() was called
  };
  // Rings may be lost to a process that shares the queue and writes its memory at will;
  // a waiter looks at the queue again at least this often.
  static constexpr std::chrono::milliseconds kRecheck{200};

  // Registers a doorbell in `queue`'s segment. RuntimeError when 32 live waiters hold its
  // table; OSError when no socket can be made under /dev/shm.
  QueueWaiter(const ByteQueue& queue, For what);
  // Gives the doorbell's slot and socket back (a forked child's copy leaves them to its
  // parent). The waiter keeps a handle on the queue while it lives.
  ~QueueWaiter();
  QueueWaiter(QueueWaiter&&) noexcept;
  QueueWaiter& operator=(QueueWaiter&&) noexcept;

  // The descriptor to poll for reading.
  int fileno() const noexcept;
  // After an attempt that would have blocked: arms the doorbell and looks again. True when
  // the caller may poll fileno(); false when the queue changed since the waiter last looked
  // (at its creation or clear()), so the attempt is worth making again at once.
  bool arm() noexcept;
  // After fileno() was readable (or kRecheck passed): reads the rings, and looks at the
  // queue, before the caller's next attempt.
  void clear() noexcept;

 private:
  ByteQueue queue_;
  std::unique_ptr<shm::Doorbell> bell_;
  For what_;
  uint32_t seen_;
};

}  // namespace xproc
