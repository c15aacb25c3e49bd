// Doorbells: how a process waiting in an event loop learns that a queue changed
// (docs/protocol.md, "Doorbells").
//
// A thread blocked in get() sleeps on the queue's futex; an event loop cannot, it needs a
// descriptor that poll() reports. So a waiter binds a datagram socket of its own at
// /dev/shm/xproc-doorbell.<16 hex digits> and registers it in a slot of the doorbell table
// in the queue's segment, with its holder token (shm/holders.h). Armed, a slot asks the
// next process that changes what it waits for to send the socket one byte; the slot is
// disarmed by that ring, so a waiter gets one byte per arming.
//
// A filesystem socket and not an abstract one: containers that share /dev/shm (and so the
// queue) usually have network namespaces of their own, and abstract names do not cross
// them. The socket file has the permission bits (and group) of the queue's file, so whoever may
// use the queue may ring its waiters and nobody else.
//
// Everything in the table may have been written by any process that shares the segment:
// a ringer only ever sends one byte to a socket named by the fixed prefix and a number,
// never follows a path read from the segment, and frees a slot (unlinking its socket)
// only when the slot's token has no holder any more, which the kernel says, not the table.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "xproc/fd.h"
#include "xproc/sharing.h"

namespace xproc::shm {

class Holder;

// What a doorbell waits for.
enum class WaitFor : uint32_t {
  kMessage = 0,  // a put: the queue's tail moved
  kRoom = 1,     // a get: the head moved (a full bounded queue has room)
  kJoin = 2,     // task_done: a join may be over
};
inline constexpr uint32_t kWaitForKinds = 3;

inline constexpr uint32_t kDoorbellSlots = 32;

struct DoorbellSlot {
  std::atomic<uint32_t> token;  // the registrant's holder token; 0 = free
  std::atomic<uint32_t> armed;  // 1: ring at the next change
  std::atomic<uint64_t> name;   // names the socket: /dev/shm/xproc-doorbell.<name, 16 hex digits>
  std::atomic<uint32_t> wait_for;
  uint32_t reserved0;
  uint64_t reserved1;
};
static_assert(sizeof(DoorbellSlot) == 32);

struct DoorbellTable {
  // Slots armed now, per WaitFor: a ringer looks at the slots only when its count is not 0.
  // A hint another process may spoil: a waiter never relies on a ring alone (it re-checks
  // the queue at least every kDoorbellRecheck).
  std::atomic<uint32_t> armed[kWaitForKinds];
  uint32_t reserved[13];
  DoorbellSlot slots[kDoorbellSlots];
};
static_assert(sizeof(DoorbellTable) == 64 + 32 * kDoorbellSlots);

// The socket path of a doorbell name.
std::string doorbell_path(uint64_t name);

// One waiter's doorbell: its socket and its slot, freed when destroyed. Not thread-safe;
// one per waiting object and event loop.
class Doorbell {
 public:
  // Binds a new socket with `access.mode`'s read and write bits (and `access.group`, when
  // given) and takes a free slot (or one whose registrant is dead) in `table`, which lies in
  // the segment `holder` holds. OSError when no socket can be made so; RuntimeError when
  // every slot holds a live waiter.
  Doorbell(DoorbellTable& table, const Holder& holder, WaitFor wait_for, const Sharing& access);
  ~Doorbell();
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;

  // The descriptor an event loop polls for reading.
  int fileno() const noexcept { return socket_.get(); }
  // Asks for one ring at the next change. The caller then looks at the queue again: a
  // change made before the arming rang nobody.
  void arm() noexcept;
  // Takes back an arming that was not rung (the caller found what it waited for).
  void disarm() noexcept;
  // Reads the rings waiting on the socket (at most 8: the rest leave it readable); true
  // when there was one.
  bool clear() noexcept;

 private:
  DoorbellTable& table_;
  DoorbellSlot* slot_ = nullptr;
  WaitFor wait_for_;
  pid_t creator_;
  uint64_t name_ = 0;
  Fd socket_;
};

// The file names under /dev/shm of doorbell sockets nobody listens on any more: their
// waiters died without closing them (a slot's next taker or ringer removes most; a queue
// that went away with dead waiters' slots leaves theirs to `xproc cleanup`).
std::vector<std::string> stale_doorbells();
// Removes one of those if nobody listens on it still. False when somebody does, or when it
// is not there or cannot be removed.
bool remove_stale_doorbell(const std::string& file_name) noexcept;

// Rings every doorbell of `table` armed for `wait_for`, disarming each (the changer's side,
// after it published its change). Never waits. Frees the slots of dead registrants.
void ring_doorbells(DoorbellTable& table, const Holder& holder, WaitFor wait_for) noexcept;

}  // namespace xproc::shm
