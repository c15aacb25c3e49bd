// HeldRecord: the oldest message of a ByteQueue, taken but left where it lies in the ring
// for as long as Python code reads it (Queue.get_view).
//
// ByteQueue offers only get_in_place(consume), whose message stays in the ring while
// `consume` runs and is removed when it returns; a `with` block is no callback. So a thread
// of the record's own calls get_in_place and waits inside `consume` until the record is
// released. Meanwhile that thread holds the queue's consumer lock: every other get of the
// queue, in any process, waits (as it waits for any get in progress), and the ring cannot
// reuse the record's space, so producers can fill the rest of the ring and then wait. A
// process that dies holding a record loses nothing: the lock is taken over and the message,
// never removed, is the next get's.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <thread>

#include <unistd.h>

#include "blocking.h"
#include "xproc/byte_queue.h"

namespace xproc::python {

class HeldRecord {
 public:
  // The oldest message, held, waiting for one as a get does (GIL released, Ctrl-C checked
  // between slices); nullptr when the deadline passed with none. Called with the GIL held.
  static std::shared_ptr<HeldRecord> take(const ByteQueue& queue, const SlicedWait& deadline);

  HeldRecord(const HeldRecord&) = delete;
  HeldRecord& operator=(const HeldRecord&) = delete;
  // Releases the record: the message is removed from the queue. Waits (with the GIL
  // released when held) for the holding thread to finish the get.
  ~HeldRecord();

  // The message's bytes in the ring, valid until this object is destroyed.
  std::span<const std::byte> bytes() const noexcept { return bytes_; }
  // Whether the calling thread took it (a get there while it is held could only wait for
  // itself).
  bool taken_by_this_thread() const noexcept { return ::getpid() == process_ && std::this_thread::get_id() == taker_; }

 private:
  explicit HeldRecord(const ByteQueue& queue);
  // One get_in_place attempt by the holding thread, waiting up to `slice` for a message:
  // true when the record is held.
  bool attempt(Timeout slice);
  void hold();  // the holding thread's body

  enum class State { kIdle, kAttempting, kHeld, kReleasing, kDone };
  ByteQueue queue_;
  pid_t process_;  // a child forked meanwhile has a copy of this object but not the thread
  std::thread::id taker_;
  std::mutex mutex_;
  std::condition_variable changed_;
  State state_ = State::kIdle;
  Timeout slice_;
  std::span<const std::byte> bytes_;
  std::exception_ptr failure_;  // what the last attempt raised
  std::unique_ptr<std::thread> thread_;
};

}  // namespace xproc::python
