// ByteQueue: a multi-producer, multi-consumer queue of byte messages in shared memory,
// with multiprocessing.Queue's semantics, that no process can wedge by dying.
//
// It is the engine under Queue<T> and the language bindings; use Queue<T> for typed
// Cap'n Proto messages. A ByteQueue is a handle: copies share the same queue (as Python's
// Queue objects do), and handles made before fork() work in the child.
//
// Crash safety: producers serialise on one mutex, consumers on another (shm/mutex.h: a dead
// owner's mutex is taken over), and each side publishes its progress with a single atomic
// store after a message is completely written (or read). A process killed at any instant
// leaves nothing half-visible: the next producer overwrites an unpublished record, the next
// consumer re-reads an unconsumed one.
//
// Hostile peers: every process sharing the queue can write every byte of it. The queue's
// shape is read once, at open; every position and record is checked against it before use.
// What cannot be a state of the ring is a DecodeError for the caller that finds it, and the
// queue is reset to empty (its messages are lost, nothing else): no read or write ever
// leaves the ring, and every wait keeps its deadline whatever the other processes do.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "xproc/sharing.h"
#include "xproc/timeout.h"

namespace xproc {

// How a queue is made (ByteQueue, Queue<T> and the bindings take these); the defaults
// suit most queues.
struct QueueOptions {
  // Python's maxsize: the most messages held at once; 0 = bounded only by capacity_bytes.
  size_t maxsize = 0;
  // The most ring bytes (rounded up to 8, below 4 GiB): what the waiting messages may
  // take at most. Memory is taken by use: reserved_bytes at creation, more as messages
  // wait, given back when the queue drains.
  size_t capacity_bytes = size_t{1} << 30;
  // Ring bytes reserved when the queue is created and kept for its life; 0 = 256 KiB
  // less the header (at most capacity_bytes). capacity_bytes preallocates it all.
  size_t reserved_bytes = 0;
  // Largest message accepted; 0 = the most the ring can always hold (capacity / 2 - 8).
  size_t max_message_bytes = 0;
  // Who besides its creator may open a named queue (default: nobody else).
  Sharing sharing;
};

// What a queue's segment says about itself.
struct QueueInfo {
  std::string name;  // empty for an anonymous queue
  uint64_t schema_id = 0;
  size_t maxsize = 0;
  size_t capacity_bytes = 0;
  size_t max_message_bytes = 0;
  uint64_t recoveries = 0;    // locks taken over from processes that died holding them
  std::string kind;           // "Queue", "SimpleQueue" or "JoinableQueue"
  size_t messages = 0;        // in the queue now
  size_t bytes_used = 0;      // of the ring, records included
  size_t bytes_reserved = 0;  // of memory the segment holds now, header included
  uint32_t put_count = 0;     // messages ever put, modulo 2^32
  uint32_t got_count = 0;     // messages ever got, modulo 2^32
  int creator_pid = 0;
  uint64_t created_unix_ns = 0;
};

namespace shm {
class Segment;
class Holder;
struct DoorbellTable;
enum class WaitFor : uint32_t;
}  // namespace shm

namespace detail {
// What a queue segment was made as (recorded in its header for tools).
enum class QueueKind : uint32_t { kQueue = 0, kSimple = 1, kJoinable = 2 };
struct QueueState;
}  // namespace detail
namespace shm {
class Segment;
}  // namespace shm

class ByteQueue {
 public:
  // An anonymous queue: inherited by fork()ed children, never visible in /dev/shm.
  explicit ByteQueue(const QueueOptions& options = {});
  // A new named queue /dev/shm/xproc.<name>, shared as options.sharing says. ValueError
  // when the name is invalid or taken; OSError when /dev/shm cannot hold it.
  static ByteQueue create(std::string_view name, const QueueOptions& options = {});
  // Opens a named queue made by any process. ValueError when absent or not a queue of this
  // layout version; PermissionError when the file is not one `sharing` accepts (by default:
  // a regular file of this user's that nobody else may read or write).
  static ByteQueue open(std::string_view name, const Sharing& sharing = {});
  // Re-opens an anonymous queue from a duplicate of its anonymous_fd() received from
  // another process (how the Python package hands anonymous queues to spawned children).
  // Takes ownership of `fd`. ValueError when it is not a sealed queue segment.
  static ByteQueue adopt_anonymous(int fd);
  // Unlinks a named queue; open handles keep working. False when there was none;
  // PermissionError when this user may not remove it.
  static bool remove(std::string_view name);

  // Copies `message` into the queue. Blocks while full (up to `timeout`; Full when it runs
  // out, or at once when !block). MessageTooLarge when over max_message_bytes;
  // ValueError after close(). Thread- and process-safe.
  void put_bytes(std::span<const std::byte> message, bool block = true, const Timeout& timeout = {});
  // As put_bytes, false instead of Full.
  bool try_put_bytes(std::span<const std::byte> message, const Timeout& timeout = std::chrono::seconds(0));

  // Removes the oldest message and returns a copy. Blocks while empty (Empty on timeout).
  std::vector<std::byte> get_bytes(bool block = true, const Timeout& timeout = {});
  std::optional<std::vector<std::byte>> try_get_bytes(const Timeout& timeout = std::chrono::seconds(0));
  // A copy of the oldest message, left in the queue (for tools that look: `xproc peek`).
  // Waits as get_bytes does; another consumer may take the message right after.
  std::vector<std::byte> peek_bytes(bool block = true, const Timeout& timeout = {});

  // Zero-copy write: reserves `size` bytes in the ring and lets `fill(dst)` write them in
  // place (dst is 8-byte aligned). Nothing is visible until fill returns; if it throws,
  // nothing is published. False when full at the deadline.
  template <typename Fill>
  bool put_in_place(size_t size, Fill&& fill, bool block = true, const Timeout& timeout = {}) {
    return put_raw(size, &call<Fill, std::byte*>, &fill, deadline(block, timeout));
  }
  // Zero-copy read: `consume(bytes)` sees the oldest message in the ring (8-byte aligned,
  // valid only during the call; other consumers wait meanwhile). The message is removed
  // when consume returns, or throws (the exception is passed on). False when empty.
  template <typename Consume>
  bool get_in_place(Consume&& consume, bool block = true, const Timeout& timeout = {}) {
    return get_raw(&call<Consume, std::span<const std::byte>>, &consume, deadline(block, timeout));
  }

  // Waits until a message is in the queue (true) or `timeout` runs out (false), taking
  // nothing: for a caller that then takes it in place under a lock of its own (Python's
  // GIL), which it may not hold while it waits. Another consumer may take it first.
  bool wait_for_message(const Timeout& timeout = {});
  // Messages in the queue now (exact at the instant; others may change it at once).
  size_t qsize() const noexcept;
  bool empty() const noexcept { return qsize() == 0; }
  // Runs `f` holding the consumers' lock if no get is inside a message now (a dead
  // consumer's lock is recovered), without waiting; false, `f` not run, otherwise. For a
  // Pipe's receiver, which reads its socket so only between the ring's messages.
  template <typename F>
  bool run_as_sole_consumer(F&& f) {
    return run_as_sole_consumer_raw([](void* c) { (*static_cast<std::remove_reference_t<F>*>(c))(); }, &f);
  }
  bool full() const noexcept;
  // This handle (and its copies in this process) may no longer put; Python's close().
  void close() noexcept;
  bool closed() const noexcept;

  // JoinableQueue: mark one got message as processed; ValueError if called more times than
  // messages were put. join() blocks until every put message has been marked (TimeoutError
  // when `timeout` runs out).
  void task_done();
  void join(Timeout timeout = {});

  // A snapshot of the queue's header: its shape, counters and recoveries (what `xproc stat`
  // prints). Reads the shared header without a lock: the counters may be mid-change.
  QueueInfo info() const;
  // Whether both handles are copies of one (the same queue, mapped once in this process).
  bool same_handle(const ByteQueue& other) const noexcept { return state_ == other.state_; }
  // When the memory this queue holds beyond its reserved_bytes may be given back: the first
  // get that finds the queue empty from then on gives it back. nullopt when it holds none.
  // (A get waiting in the queue comes back for it by itself; a caller that sleeps elsewhere,
  // as a Pipe's receiver does in poll(), wakes for it and calls return_memory().)
  xproc::Deadline memory_returns_at() const;
  // What a get finding the queue empty does to its memory: gives back what it holds
  // beyond reserved_bytes once that has settled and no one is putting. Never waits.
  void return_memory();
  // The anonymous segment's memfd (for bindings that re-open it in another process), -1
  // for named queues.
  int anonymous_fd() const noexcept;

  // For Pipe(), whose rings and control block share one segment: the bytes a queue of
  // `options` takes (header and ring), a new queue at `offset` in `segment` (which must hold
  // that much there, reserved as the queue needs it), and the queue another process made at
  // `offset`, in `length` bytes (ValueError when it is not a queue that fits them).
  static size_t region_bytes(const QueueOptions& options);
  static ByteQueue create_in(std::shared_ptr<const shm::Segment> segment, size_t offset, const QueueOptions& options);
  static ByteQueue attach_in(std::shared_ptr<const shm::Segment> segment, size_t offset, size_t length,
                             const std::string& what);

  // For Queue<T> and bindings: a typed queue records its schema id and kind.
  ByteQueue(const QueueOptions& options, uint64_t schema_id, detail::QueueKind kind);
  static ByteQueue create(std::string_view name, const QueueOptions& options, uint64_t schema_id,
                          detail::QueueKind kind);
  uint64_t schema_id() const noexcept;

  // The Deadline a call with `block` and `timeout` works towards: nullopt (never) when it
  // blocks without a timeout, one already past when it must not wait. ValueError for a
  // negative timeout.
  using Deadline = xproc::Deadline;
  static Deadline deadline(bool block, const Timeout& timeout) {
    if (block && !timeout) return std::nullopt;  // the common case, kept inline
    return timed_deadline(block, timeout);
  }

 private:
  static Deadline timed_deadline(bool block, const Timeout& timeout);
  template <typename F, typename Arg>
  static void call(void* f, Arg arg) {
    (*static_cast<std::remove_reference_t<F>*>(f))(arg);
  }
  bool put_raw(size_t size, void (*fill)(void*, std::byte*), void* ctx, Deadline deadline);
  bool get_raw(void (*consume)(void*, std::span<const std::byte>), void* ctx, Deadline deadline);
  // As get_raw, but the message stays in the queue (peek_bytes).
  bool peek_raw(void (*consume)(void*, std::span<const std::byte>), void* ctx, Deadline deadline);
  // What both are: a template, so that get_raw's code has no test for the peek.
  enum class Taking : bool { kRemove, kLeave };
  template <Taking taking>
  bool take_raw(void (*consume)(void*, std::span<const std::byte>), void* ctx, Deadline deadline);
  bool run_as_sole_consumer_raw(void (*f)(void*), void* ctx);

  // For QueueWaiter (queue_waiter.h): the queue's doorbell table, this process's holding of
  // its segment, who may ring its waiters, the count a waiter for `change` watches
  // (read sequentially consistent), and the raising of that change's sleeper flag.
  friend class QueueWaiter;
  shm::DoorbellTable& doorbell_table() const noexcept;
  const shm::Holder& holder() const noexcept;
  Sharing doorbell_access() const;
  uint32_t watched_count(shm::WaitFor change) const noexcept;
  void announce_waiter(shm::WaitFor change) const noexcept;
  static ByteQueue attach(shm::Segment segment, const std::string& what);
  explicit ByteQueue(std::shared_ptr<detail::QueueState> state) : state_(std::move(state)) {}

  std::shared_ptr<detail::QueueState> state_;
};

}  // namespace xproc
