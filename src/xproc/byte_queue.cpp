// The shared-memory ring behind ByteQueue. See byte_queue.h for the crash-safety argument
// and docs/protocol.md for the layout.
#include "xproc/byte_queue.h"

#include <sched.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "xproc/errors.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/shm/mutex.h"
#include "xproc/shm/segment.h"
#include "xproc/spin_internal.h"
#include "xproc/sync_internal.h"

namespace xproc {
namespace detail {

// A queue's waiter: starts at 50 us, doubles when the wait ended while spinning, halves
// when it did not, between 2 us and 100 us (the ceiling, kMaxSpinNs).
inline constexpr SpinTuning kQueueSpin{.initial_ns = 50'000, .floor_ns = 2'000, .probe_every = 0};

// Process-local state of one mapped queue, shared by all handles copied from each other.
struct QueueState {
  // The segment may hold more than this queue (a Pipe's two rings and control block).
  std::shared_ptr<const shm::Segment> memory;
  const shm::Segment& segment;
  size_t region;  // where the queue's header is in the segment
  QueueHeader* header;
  std::byte* ring;
  // The queue's shape, read from the header once (or chosen, for a new queue) and never
  // again: any process sharing the segment could change the header's copy at any time.
  QueueShape shape;
  std::atomic<bool> closed{false};
  // A lower bound of the tail, so consumers touch the producers' cache line only when
  // they run out of known messages. (Every message before it is published and complete.)
  std::atomic<uint64_t> cached_tail{0};
  // The head a producer in this process last planned space against, and the tail that
  // put produced. While the tail is still that value nobody has written since, so the
  // cached head is at most one lap old and safe to plan against (and the producers'
  // cache line of the head need not be touched).
  std::atomic<uint64_t> cached_head{0};
  std::atomic<uint64_t> last_tail_written{~uint64_t{0}};
  // How long a waiter spins before it sleeps (wait_for_change).
  AdaptiveSpin spin{kQueueSpin};
  // The last get in this process found its message without waiting: a consumer keeping
  // up with a stream (see get_raw).
  std::atomic<bool> streaming{false};
  // How long a consumer that has just caught up with a stream, or a producer that has just
  // filled the queue, waits before looking at the other side's position (see paced_wait).
  std::atomic<int64_t> consumer_pacing_ns{4'000};
  std::atomic<int64_t> producer_pacing_ns{4'000};

  QueueState(std::shared_ptr<const shm::Segment> shared, size_t region_offset, const QueueShape& queue_shape)
      : memory(std::move(shared)),
        segment(*memory),
        region(region_offset),
        header(reinterpret_cast<QueueHeader*>(segment.data() + region)),
        ring(segment.data() + region + kRingOffset),
        shape(queue_shape) {}
  QueueState(shm::Segment whole, const QueueShape& queue_shape)
      : QueueState(std::make_shared<const shm::Segment>(std::move(whole)), 0, queue_shape) {}
};

}  // namespace detail

using detail::Clock;
using detail::Position;
using detail::QueueHeader;
using detail::QueueKind;
using detail::QueueShape;
using detail::QueueState;
using detail::RecordHeader;
using detail::round_up8;

namespace {

constexpr int64_t kMaxSpinNs = 100'000;
constexpr int kQuickLooks = 32;
// Bounds of the pacing waits (see paced_wait). The longest is what a message put just after
// a consumer drained a backlog may wait for it, beyond the usual wake-up; shorter than the
// shortest, a pause is not worth it.
constexpr int64_t kMinPacingNs = 200;
constexpr int64_t kMaxPacingNs = 20'000;
constexpr auto kYieldEvery = std::chrono::microseconds(16);

size_t ring_capacity(const QueueOptions& options) {
  XPROC_REQUIRE(options.capacity_bytes >= 64 && options.capacity_bytes < (uint64_t{1} << 32),
                "capacity_bytes must be between 64 bytes and 4 GiB", options.capacity_bytes);
  return round_up8(options.capacity_bytes);
}

// Ring bytes an idle queue keeps: with the header, 256 KiB.
constexpr size_t kDefaultReservedBytes = (size_t{256} << 10) - detail::kRingOffset;
// Growth beyond them is reserved in steps of at least this much ...
constexpr size_t kGrowthStep = size_t{1} << 20;
// ... and given back once the queue is empty and has not grown for this long.
constexpr int64_t kSettleNs = 100'000'000;
constexpr auto kCoarseClockLag = std::chrono::milliseconds(10);
// A message this large keeps the memory it took from settling (see put_raw).
constexpr size_t kLargeMessage = size_t{1} << 20;
// Past this much memory a full ring waits up to kGrowthPace for a consumer to take
// something before it grows (see put_raw), and wraps when it can rather than grow.
constexpr uint64_t kPacedGrowthFrom = uint64_t{8} << 20;
constexpr auto kGrowthPace = std::chrono::microseconds(50);

size_t base_bytes(const QueueOptions& options, size_t capacity) {
  const size_t wanted = options.reserved_bytes != 0 ? round_up8(options.reserved_bytes) : kDefaultReservedBytes;
  return std::min(wanted, capacity);
}

size_t max_message(const QueueOptions& options, size_t capacity) {
  // A record of up to capacity/2 always fits once the ring drains, wherever the tail is.
  const size_t limit = capacity / 2 - sizeof(RecordHeader);
  if (options.max_message_bytes == 0) return limit;
  XPROC_REQUIRE(options.max_message_bytes <= limit, "max_message_bytes must be at most capacity_bytes / 2 - 8",
                options.max_message_bytes, limit);
  return options.max_message_bytes;
}

QueueShape shape_of(const QueueOptions& options, uint64_t schema_id, QueueKind kind) {
  const size_t capacity = ring_capacity(options);
  return QueueShape::make(kind, schema_id, capacity, base_bytes(options, capacity), max_message(options, capacity),
                          options.maxsize);
}

void initialise(QueueHeader* h, const QueueShape& shape) {
  h->layout_version = detail::kQueueLayoutVersion;
  h->kind = shape.kind;
  h->schema_id = shape.schema_id;
  h->capacity = shape.capacity;
  h->base = shape.base;
  h->reserved_end.store(shape.base, std::memory_order_relaxed);
  h->max_message = shape.max_message;
  h->maxsize = shape.maxsize;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  h->created_unix_ns = static_cast<uint64_t>(now.tv_sec) * 1000000000u + now.tv_nsec;
  h->creator_pid = getpid();
  h->producer_lock.store(0, std::memory_order_relaxed);
  h->consumer_lock.store(0, std::memory_order_relaxed);
  h->tail.store(0, std::memory_order_relaxed);
  h->head.store(0, std::memory_order_relaxed);
  // Published last: an opener that sees the magic sees a complete header.
  h->magic.store(detail::kQueueMagic, std::memory_order_release);
}

Position load(const std::atomic<uint64_t>& word, std::memory_order order = std::memory_order_acquire) {
  return Position::unpack(word.load(order));
}

// Messages between two positions (counts wrap at 2^32).
uint32_t distance(Position from, Position to) { return to.count - from.count; }

// Wakes the sleepers on `futex` and rings the doorbells armed for `change`: a waiter in an
// event loop raises the same flag as one asleep on the futex (QueueWaiter::arm).
void wake(QueueState& s, const void* futex, shm::WaitFor change) {
  detail::futex_wake_all(futex);
  shm::ring_doorbells(s.header->doorbells, s.segment.holder(), change);
}

// Publishes `value` into `position` and wakes the sleepers announced by `flag`. Both the
// publish here and the sleeper's flag-raising are sequentially consistent read-modify-
// writes, so of "publish, then read flag" and "raise flag, then read position" at least
// one side sees the other's write: no wake-up is ever lost. (A seq_cst exchange costs
// what a store plus fence does, and sanitizers can reason about it.)
void publish_and_wake(QueueState& s, std::atomic<uint64_t>& position, uint64_t value, std::atomic<uint32_t>& flag,
                      shm::WaitFor change) {
  position.exchange(value, std::memory_order_seq_cst);
  if (flag.load(std::memory_order_seq_cst) != 0 && flag.exchange(0) != 0) [[unlikely]]
    wake(s, &position, change);
}

// Waits until the 32-bit count at `word` differs from `observed`: first a bounded spin
// (adapting to how often spinning paid off), then futex sleeps announced through `flag`.
// Returns false when the deadline passes first.
bool wait_for_change(QueueState& state, const std::atomic<uint64_t>& word, uint32_t observed,
                     std::atomic<uint32_t>& flag, const ByteQueue::Deadline& deadline) {
  auto changed = [&] { return static_cast<uint32_t>(word.load(std::memory_order_acquire)) != observed; };
  // A non-blocking call (or a spent timeout) neither spins nor announces a sleeper: a
  // raised flag would cost the next publisher a futex wake for nobody, and the misses
  // would shrink the spin budget of the blocking calls. (timed_deadline gives the
  // non-waiting calls the clock's epoch, known to be past without reading the clock.)
  if (deadline && *deadline == Clock::time_point{}) return changed();
  // In a stream, the other side is usually mid-operation: look a few times before reading
  // the clock, which costs tens of nanoseconds in a virtual machine.
  for (int i = 0; i < kQuickLooks; ++i) {
    if (changed()) return true;
    detail::cpu_relax();
  }
  const auto spin_start = Clock::now();
  if (deadline && spin_start >= *deadline) return changed();
  const int64_t budget = state.spin.next(kMaxSpinNs);
  const auto budget_end = spin_start + std::chrono::nanoseconds(budget);
  const auto spin_end = deadline && *deadline < budget_end ? *deadline : budget_end;
  auto next_yield = spin_start + kYieldEvery;
  for (int i = 0;; ++i) {
    if (changed()) {
      state.spin.record(true, kMaxSpinNs);
      return true;
    }
    detail::cpu_relax();
    if ((i & 63) == 63) {
      const auto now = Clock::now();
      if (now >= spin_end) break;
      if (now >= next_yield) {
        // Give the CPU away now and then when another task wants it: with more busy
        // processes than CPUs (one producer, two consumers on two CPUs) a spinner would
        // otherwise take a share of the very producer it waits for. With nothing else
        // runnable this returns at once. Not every few pauses: a system call competes for
        // the core far more than `pause` does, which hurts a hyperthread sibling working
        // (a 64 KiB copy-out ran at half speed when yielding every microsecond).
        sched_yield();
        next_yield = now + kYieldEvery;
      }
    }
  }
  if (spin_end == budget_end) state.spin.record(false, kMaxSpinNs);  // a deadline that cut the spin proves nothing
  for (;;) {
    if (deadline && Clock::now() >= *deadline) return changed();
    flag.exchange(1, std::memory_order_seq_cst);  // see publish_and_wake
    if (static_cast<uint32_t>(word.load(std::memory_order_seq_cst)) != observed) return true;
    detail::futex_wait(&word, observed, detail::bounded_sleep(deadline));
    if (changed()) return true;
  }
}

// Waits `ns` nanoseconds (or until the deadline) without looking at the queue, spinning on
// `pause` and giving the CPU away now and then as wait_for_change does.
void pause_for(int64_t ns, const ByteQueue::Deadline& deadline) {
  const auto start = Clock::now();
  auto until = start + std::chrono::nanoseconds(ns);
  if (deadline && *deadline < until) until = *deadline;
  auto next_yield = start + kYieldEvery;
  for (;;) {
    for (int i = 0; i < 8; ++i) detail::cpu_relax();  // about 0.2 us here; the clock costs 20-40 ns
    const auto now = Clock::now();
    if (now >= until) return;
    if (now >= next_yield) {
      sched_yield();
      next_yield = now + kYieldEvery;
    }
  }
}

// Ring bytes between the read and write offsets: all of it when they meet with messages in
// between, none when they meet with none.
uint64_t bytes_in_use(Position head, Position tail, uint64_t capacity) {
  if (tail.offset == head.offset) return distance(head, tail) != 0 ? capacity : 0;
  return tail.offset > head.offset ? tail.offset - head.offset : tail.offset + capacity - head.offset;
}

// The messages between `head` and `tail` (read in that order): none when a put raced ahead
// of the head's read, and never more than the ring holds (even if a scribbler says so).
size_t messages_between(const QueueShape& shape, Position head, Position tail) {
  const int32_t n = static_cast<int32_t>(distance(head, tail));
  return n > 0 ? std::min<size_t>(static_cast<size_t>(n), shape.max_messages) : 0;
}

// The ring bytes that hold memory now, [0, end): the producers' growth says, within the
// shape's bounds whatever another process wrote there.
uint64_t reserved_ring(const QueueState& s) {
  return std::clamp<uint64_t>(s.header->reserved_end.load(std::memory_order_relaxed), s.shape.base, s.shape.capacity);
}

// Whether at least half the queue is in use, by messages or by the bytes it holds now.
bool half_full(const QueueState& s) {
  const Position head = load(s.header->head);
  const Position tail = load(s.header->tail);
  const uint64_t messages = distance(head, tail);
  const QueueShape& shape = s.shape;
  const uint64_t ring = reserved_ring(s);
  return (shape.maxsize != 0 && 2 * messages >= shape.maxsize) || 2 * bytes_in_use(head, tail, ring) >= ring;
}

// Pacing: a side that finds the queue empty (a consumer) or full (a producer) right after
// working through it waits a while without looking, then adapts how long.
//
// Each look at the other side's position pulls its cache line away from that side, which
// must take it back for its next publish, and the ring's newest lines with it. A side that
// looks at once falls into step with the other, one message and several cross-core line
// transfers at a time. After a pause it works through a batch without touching the other
// side's lines, while the hardware prefetches the ring ahead of it. In ten paired runs of
// 64 B 1P->1C, a consumer's 0.4 us wait made 11.5 M msgs/s, 6 us 19.8 M, 25 us 23.1 M,
// against 16.9 M of the spinning ring.
//
// After the pause, `keep_going` says whether the wait was harmless (a consumer: the queue
// still has room; a producer: the queue still holds half its capacity). Then the next wait
// doubles, up to kMaxPacingNs. Otherwise it halves, and below kMinPacingNs it stops: on a
// queue of a few messages any pause idles the other side. It starts again once a look
// finds that a pause would have been harmless. A call that must not wait never pauses, and
// a ping-pong never gets here: its gets all wait for their message, and its puts never
// find the queue full.
template <typename KeepGoing>
void paced_wait(std::atomic<int64_t>& pacing_ns, const ByteQueue::Deadline& deadline, KeepGoing keep_going) {
  if (deadline && *deadline == Clock::time_point{}) return;
  const int64_t wait = pacing_ns.load(std::memory_order_relaxed);
  if (wait != 0) pause_for(wait, deadline);
  const int64_t next =
      keep_going() ? std::clamp(wait * 2, kMinPacingNs, kMaxPacingNs) : (wait / 2 < kMinPacingNs ? 0 : wait / 2);
  pacing_ns.store(next, std::memory_order_relaxed);
}

struct Placement {
  uint64_t write_at;
  uint32_t marker = 0;    // 0, or the RecordHeader flag of a marker that goes at the tail first
  uint64_t grows_to = 0;  // 0 inside the memory held, else the ring bytes it must hold first
};

// What producers know of the ring's growth when they place a record, read holding their
// mutex and clamped to the shape (another process may have written anything there).
struct Growth {
  uint64_t reserved_end;  // [0, reserved_end) holds memory
  uint64_t wrap_point;    // the end of the upper part while the ring is wrapped
  bool jump_pending;      // consumers have not passed the last JUMP: only [tail, capacity) is free
};

// Where a record of `need` bytes goes, or nullopt when the queue is full for it.
//
// The ring wraps within the memory it holds while it is not crowded, grows past its end
// otherwise, and when wrapped and out of room it jumps past its upper part (a JUMP marker
// at the tail sends readers there), so an unbounded queue only fills at `capacity`.
//
// `growth()` reads the rest of the growth state. The common cases need only `reserved_end`
// and whether `jump_pending` is set (its word, unchecked): a record that fits at the tail of
// one run inside the memory held (in any state: while a JUMP is pending the tail is past its
// target, or 0 when full), and one that fits between the tail and the head of a wrapped ring
// without a JUMP pending. The second is every put of a producer whose cached head is from
// before the consumers' last wrap, most of a lap in a stream that drains often.
template <typename ReadGrowth>
std::optional<Placement> place(Position head, Position tail, uint64_t need, const QueueShape& shape,
                               uint64_t reserved_end, bool jump_flagged, ReadGrowth&& read_growth) {
  const uint32_t count = distance(head, tail);
  if (shape.maxsize != 0 && count >= shape.maxsize) return std::nullopt;
  if ((count == 0 || tail.offset > head.offset) && tail.offset + need + sizeof(RecordHeader) <= reserved_end) {
    return Placement{tail.offset};
  }
  const uint64_t capacity = shape.capacity;
  // A ring that can grow keeps room for a JUMP marker before the head while wrapped; a
  // fixed one (all of it reserved) fills to the last byte.
  const uint64_t slack = capacity > shape.base ? sizeof(RecordHeader) : 0;
  const bool fits_before_head = tail.offset < head.offset && need + slack <= head.offset - tail.offset;
  if (fits_before_head && !jump_flagged) return Placement{tail.offset};
  const Growth growth = read_growth();
  // The memory a placement writes: the record, the room for a marker after it, and the
  // marker before it; beyond what is held, the ring grows first.
  auto at = [&](uint64_t write_at, uint32_t marker) {
    uint64_t end = write_at + need;
    if (end < capacity) end += sizeof(RecordHeader);
    if (marker != 0) end = std::max(end, tail.offset + sizeof(RecordHeader));
    return Placement{write_at, marker, end > growth.reserved_end ? end : 0};
  };
  const uint64_t room_to_end = capacity - tail.offset;
  if (growth.jump_pending) {
    // Records up to the JUMP, then from its target to the tail; a tail back at 0 has
    // filled the ring to its end.
    if (tail.offset != 0 && need <= room_to_end) return at(tail.offset, 0);
    return std::nullopt;
  }
  if (count == 0) {
    // Empty: stay where memory is held, else start again at the front (before the WRAP
    // marker at the tail, which readers look at first), else grow.
    if (tail.offset + need + sizeof(RecordHeader) <= growth.reserved_end) return at(tail.offset, 0);
    if (need + slack <= tail.offset) return at(0, RecordHeader::kWrap);
    if (need <= room_to_end) return at(tail.offset, 0);
    return std::nullopt;
  }
  if (tail.offset > head.offset) {
    // Records in [head, tail); free: [tail, capacity) and [0, head).
    // A run over half of what the ring holds grows it rather than wrap into the little
    // room at the front: a ring just big enough never to block would block often.
    const bool fits_front = need + slack <= head.offset;
    const bool crowded =
        growth.reserved_end < kPacedGrowthFrom && 2 * (tail.offset - head.offset) > growth.reserved_end;
    if (fits_front && !crowded) return at(0, RecordHeader::kWrap);
    if (need <= room_to_end) return at(tail.offset, 0);
    if (fits_front) return at(0, RecordHeader::kWrap);
    return std::nullopt;
  }
  // Wrapped: records in [head, wrap_point) and [0, tail); free: [tail, head).
  if (fits_before_head) return at(tail.offset, 0);
  const uint64_t jump_to = growth.wrap_point + sizeof(RecordHeader);
  if (tail.offset + sizeof(RecordHeader) <= head.offset && jump_to + need <= capacity) {
    return at(jump_to, RecordHeader::kJump);
  }
  return std::nullopt;
}

// Whether `head` and `tail`, as read from the segment, describe a state the ring can be in:
// offsets on 8-byte boundaries inside it, no more messages than it can hold, and none at
// all exactly when the two meet. Both sides check every pair they act on, so that nothing
// another process wrote makes them read or write outside the ring.
bool plausible(const QueueShape& shape, Position head, Position tail) {
  const uint32_t messages = distance(head, tail);
  return head.offset < shape.capacity && tail.offset < shape.capacity && (head.offset | tail.offset) % 8 == 0 &&
         messages <= shape.max_messages && (messages != 0 || head.offset == tail.offset);
}

// The oldest record, at `head` (after the markers there), read once from the ring.
struct Record {
  uint64_t at;    // where its header is
  uint32_t size;  // payload bytes
  uint64_t next;  // the offset after it
};

// The record at `head`, or nullopt when what the ring holds there cannot be one: markers
// must lead forward inside the ring (a WRAP, then a JUMP, at most), and the record must be
// no larger than the queue's largest message and lie inside the ring, before the tail when
// the tail follows it.
std::optional<Record> record_at(const QueueState& s, Position head, Position tail) {
  const QueueShape& shape = s.shape;
  uint64_t at = head.offset;
  bool followed = false;
  for (int markers = 0;; ++markers) {
    const auto* record = reinterpret_cast<const RecordHeader*>(s.ring + at);
    const uint32_t flags = detail::read_shared(record->flags);
    const uint32_t size = detail::read_shared(record->size);
    if (flags == 0) {
      const uint64_t need = sizeof(RecordHeader) + round_up8(size);
      const bool before_tail = followed || tail.offset <= at || at + need <= tail.offset;
      if (size > shape.max_message || at + need > shape.capacity || !before_tail) return std::nullopt;
      return Record{at, size, at + need == shape.capacity ? 0 : at + need};
    }
    if (markers == 2) return std::nullopt;
    if (flags == RecordHeader::kWrap && at != 0) {
      at = 0;
    } else if (flags == RecordHeader::kJump && size > at && size < shape.capacity && size % 8 == 0) {
      at = size;
    } else {
      return std::nullopt;
    }
    followed = true;
  }
}

std::string describe(Position head, Position tail) {
  return "head " + std::to_string(head.count) + "@" + std::to_string(head.offset) + ", tail " +
         std::to_string(tail.count) + "@" + std::to_string(tail.offset);
}

// The growth state producers place against, read holding their mutex. A JUMP is pending
// from when the message after it is published until the consumers have taken that
// message; one they have passed, or one whose producer died before publishing it, is
// cleared.
Growth read_growth(QueueState& s, Position head, Position tail) {
  QueueHeader& h = *s.header;
  bool pending = h.jump_pending.load(std::memory_order_relaxed) != 0;
  if (pending) {
    const uint32_t jump_count = h.jump_count.load(std::memory_order_relaxed);
    const bool published = static_cast<int32_t>(tail.count - jump_count) > 0;
    const bool passed = static_cast<int32_t>(head.count - jump_count) > 0;
    if (!published || passed) {
      h.jump_pending.store(0, std::memory_order_relaxed);
      pending = false;
    }
  }
  const uint64_t wrap_point = h.wrap_point.load(std::memory_order_relaxed);
  return Growth{reserved_ring(s), wrap_point < s.shape.capacity && wrap_point % 8 == 0 ? wrap_point : s.shape.capacity,
                pending};
}

// CLOCK_MONOTONIC to a few milliseconds, for settling (kSettleNs): the coarse clock is read
// from memory, where the precise one costs a get tens of nanoseconds in a virtual machine.
int64_t coarse_now_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// The memory beyond the base is in use now: it settles kSettleNs from now. Growing sets
// this, and so do a put and a get of a large message: a stream of them may drain between
// messages, and a message may take longer than the settling time to write or read; given
// back at each drain, every message would take the memory anew (allocating and clearing
// 100 MiB took longer than copying it).
void memory_in_use(QueueHeader& h) {
  h.grown_at_ns.store(static_cast<uint64_t>(coarse_now_ns()), std::memory_order_relaxed);
}

// Reserves the ring's memory up to at least `end` (holding the producers' mutex), a step
// at a time, before anything is written there. MemoryError when it cannot be had.
void grow(QueueState& s, uint64_t reserved_end, uint64_t end) {
  const uint64_t step_end = std::max(end, reserved_end + kGrowthStep);
  const uint64_t new_end = std::min<uint64_t>(s.shape.capacity, round_up8(step_end));
  s.segment.reserve(s.region + detail::kRingOffset + reserved_end, new_end - reserved_end);
  s.header->reserved_end.store(new_end, std::memory_order_relaxed);
  memory_in_use(*s.header);
}

// When the memory a queue holds beyond its base may be given back: once it has not grown
// for kSettleNs. Giving it back at every drain made a stream that drains often reserve and
// release the same megabytes over and over (a 64 KiB stream ran at a tenth of its speed).
std::optional<Clock::time_point> settles_at(const QueueState& s) {
  const QueueHeader& h = *s.header;
  if (h.reserved_end.load(std::memory_order_relaxed) <= s.shape.base) return std::nullopt;
  // Written by any process sharing the segment: a time after now (or one that would
  // overflow) is no growth time at all, so the memory is not kept for ever by it.
  const uint64_t written = h.grown_at_ns.load(std::memory_order_relaxed);
  const int64_t grown_at = written > static_cast<uint64_t>(coarse_now_ns()) ? 0 : static_cast<int64_t>(written);
  return Clock::time_point(std::chrono::nanoseconds(grown_at + kSettleNs));
}

// Whether that time has come by the coarse clock (a tick, a few milliseconds, behind).
bool settled_now(const std::optional<Clock::time_point>& settled) {
  return settled && std::chrono::nanoseconds(coarse_now_ns()) >= settled->time_since_epoch();
}

// How long a consumer that found the queue empty waits for a put: until `deadline`, or,
// when the queue holds memory that settles sooner, until just after that (past the coarse
// clock's lag, so that drained() sees it) to give the memory back; `for_memory` says which.
struct EmptyWait {
  Deadline until;
  bool for_memory;
};
EmptyWait empty_wait(const QueueState& s, const Deadline& deadline) {
  const auto settled = settles_at(s);
  if (!settled) return {deadline, false};
  const Clock::time_point returns = *settled + kCoarseClockLag;
  if (returns <= Clock::now() || (deadline && *deadline <= returns)) return {deadline, false};
  return {returns, true};
}

// The queue is empty at `head` (holding the consumers' mutex): if it holds memory beyond
// its base that has settled, and no producer is busy, both sides start again at the front
// of the ring and the rest is given back. Producers take their mutex only to put, so a
// busy one means the queue is not empty for long; a later call tries again.
void drained(QueueState& s, Position head) {
  if (!settled_now(settles_at(s))) return;
  QueueHeader& h = *s.header;
  // A consumer that only caught up with its cached tail finds a newer one here, without
  // taking the line of a busy producer's mutex.
  const uint64_t tail = h.tail.load(std::memory_order_acquire);
  s.cached_tail.store(tail, std::memory_order_relaxed);
  if (tail != head.pack()) return;
  shm::MutexLock producers(h.producer_lock, s.segment.holder(), Clock::time_point{});
  if (!producers.locked()) return;
  if (load(h.tail).pack() != head.pack()) return;  // a put came in meanwhile
  const Position front{head.count, 0};
  h.tail.exchange(front.pack(), std::memory_order_seq_cst);
  h.head.exchange(front.pack(), std::memory_order_seq_cst);
  h.jump_pending.store(0, std::memory_order_relaxed);
  h.wrap_point.store(0, std::memory_order_relaxed);
  h.reserved_end.store(s.shape.base, std::memory_order_relaxed);
  s.cached_tail.store(front.pack(), std::memory_order_relaxed);
  s.last_tail_written.store(~uint64_t{0}, std::memory_order_relaxed);
  s.segment.release(s.region + detail::kRingOffset + s.shape.base, s.shape.capacity - s.shape.base);
}

// Something other than this protocol wrote into the segment: `found` is what. Takes both
// mutexes (the consumers' first, as every path does) and looks again; unless another call has
// repaired it meanwhile, empties the queue: head and tail meet at offset 0, the messages in
// it are lost, a JoinableQueue counts them as done. Throws DecodeError for the caller either
// way. Called with neither mutex held.
[[noreturn]] void reset_corrupted(QueueState& s, const std::string& found, const ByteQueue::Deadline& deadline) {
  QueueHeader& h = *s.header;
  const std::string queue = s.segment.name().empty() ? "an anonymous queue" : "queue '" + s.segment.name() + "'";
  const std::string what = queue + " was corrupted by a process sharing its memory (" + found + ")";
  shm::MutexLock consumers(h.consumer_lock, s.segment.holder(), deadline);
  shm::MutexLock producers(h.producer_lock, s.segment.holder(), deadline);
  if (!consumers.locked() || !producers.locked()) {
    throw DecodeError(what + "; the next call that can take its locks resets it");
  }
  const Position head = load(h.head);
  const Position tail = load(h.tail);
  if (plausible(s.shape, head, tail) && (distance(head, tail) == 0 || record_at(s, head, tail))) {
    s.cached_tail.store(tail.pack(), std::memory_order_relaxed);
    throw DecodeError(what + "; it was repaired meanwhile");
  }
  const uint32_t lost = distance(head, tail) <= s.shape.max_messages ? distance(head, tail) : 0;
  const Position empty{tail.count, 0};
  h.jump_pending.store(0, std::memory_order_relaxed);
  s.cached_tail.store(empty.pack(), std::memory_order_relaxed);
  s.last_tail_written.store(~uint64_t{0}, std::memory_order_relaxed);
  publish_and_wake(s, h.tail, empty.pack(), h.consumers_sleeping, shm::WaitFor::kMessage);
  publish_and_wake(s, h.head, empty.pack(), h.producers_sleeping, shm::WaitFor::kRoom);
  if (s.shape.kind == QueueKind::kJoinable && lost != 0) {
    h.done.fetch_add(lost, std::memory_order_seq_cst);
    if (h.joiners_sleeping.exchange(0) != 0) wake(s, &h.done, shm::WaitFor::kJoin);
  }
  h.recoveries.fetch_add(1, std::memory_order_relaxed);
  throw DecodeError(what + "; its " + std::to_string(lost) + " messages were dropped and it carries on empty");
}

}  // namespace

ByteQueue::Deadline ByteQueue::timed_deadline(bool block, const Timeout& timeout) {
  // A call that must not wait gets a deadline long past (the clock's epoch, boot time)
  // instead of "now": reading the clock costs a tenth of a small put, and the bindings try
  // every call that way first. Not time_point::min(): callers subtract the clock from it.
  if (!block) return Clock::time_point{};
  if (!timeout) return std::nullopt;
  XPROC_REQUIRE(timeout->count() >= 0, "'timeout' must be a non-negative number", timeout->count());
  if (timeout->count() == 0) return Clock::time_point{};
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
}

ByteQueue::ByteQueue(const QueueOptions& options) : ByteQueue(options, 0, QueueKind::kQueue) {}

ByteQueue::ByteQueue(const QueueOptions& options, uint64_t schema_id, QueueKind kind) {
  const QueueShape shape = shape_of(options, schema_id, kind);  // validated before memory is reserved
  auto state = std::make_shared<QueueState>(
      shm::Segment::anonymous(detail::kRingOffset + shape.capacity, detail::kRingOffset + shape.base), shape);
  initialise(state->header, shape);
  state_ = std::move(state);
}

ByteQueue ByteQueue::create(std::string_view name, const QueueOptions& options) {
  return create(name, options, 0, QueueKind::kQueue);
}

ByteQueue ByteQueue::create(std::string_view name, const QueueOptions& options, uint64_t schema_id, QueueKind kind) {
  const QueueShape shape = shape_of(options, schema_id, kind);
  auto state = std::make_shared<QueueState>(shm::Segment::create(name, detail::kRingOffset + shape.capacity,
                                                                 options.sharing, detail::kRingOffset + shape.base),
                                            shape);
  initialise(state->header, shape);
  return ByteQueue(std::move(state));
}

size_t ByteQueue::region_bytes(const QueueOptions& options) {
  return detail::kRingOffset + shape_of(options, 0, QueueKind::kQueue).capacity;
}

ByteQueue ByteQueue::create_in(std::shared_ptr<const shm::Segment> segment, size_t offset,
                               const QueueOptions& options) {
  const QueueShape shape = shape_of(options, 0, QueueKind::kQueue);
  XPROC_REQUIRE(offset % 64 == 0 && offset <= segment->size() && segment->size() - offset >= region_bytes(options),
                "a queue's region must be aligned and inside its segment", offset, segment->size());
  segment->reserve(offset, detail::kRingOffset + shape.base);
  auto state = std::make_shared<QueueState>(std::move(segment), offset, shape);
  initialise(state->header, shape);
  return ByteQueue(std::move(state));
}

ByteQueue ByteQueue::attach_in(std::shared_ptr<const shm::Segment> segment, size_t offset, size_t length,
                               const std::string& what) {
  if (offset % 64 != 0 || offset > segment->size() || segment->size() - offset < length ||
      length < detail::kRingOffset) {
    throw ValueError(what + " does not fit in its segment");
  }
  const QueueShape shape =
      detail::read_shape(*reinterpret_cast<const QueueHeader*>(segment->data() + offset), length, what);
  return ByteQueue(std::make_shared<QueueState>(std::move(segment), offset, shape));
}

ByteQueue ByteQueue::open(std::string_view name, const Sharing& sharing) {
  return attach(shm::Segment::open(name, sharing), "segment '" + std::string(name) + "'");
}

ByteQueue ByteQueue::adopt_anonymous(int fd) {
  return attach(shm::Segment::adopt(fd), "the anonymous segment of descriptor " + std::to_string(fd));
}

ByteQueue ByteQueue::attach(shm::Segment segment, const std::string& what) {
  if (segment.size() < detail::kRingOffset) throw ValueError(what + " is too small to be a queue");
  const QueueShape shape =
      detail::read_shape(*reinterpret_cast<const QueueHeader*>(segment.data()), segment.size(), what);
  return ByteQueue(std::make_shared<QueueState>(std::move(segment), shape));
}

bool ByteQueue::remove(std::string_view name) { return shm::Segment::remove(name); }

bool ByteQueue::put_raw(size_t size, void (*fill)(void*, std::byte*), void* ctx, Deadline deadline) {
  QueueState& s = *state_;
  QueueHeader& h = *s.header;
  const QueueShape& shape = s.shape;
  if (s.closed.load(std::memory_order_relaxed)) throw ValueError("Queue is closed");
  if (size > shape.max_message) {
    throw MessageTooLarge("message of " + std::to_string(size) + " bytes exceeds the queue's maximum of " +
                          std::to_string(shape.max_message));
  }
  const uint64_t need = sizeof(RecordHeader) + round_up8(size);
  bool waited = false;
  bool paced_growth = false;
  for (;;) {
    shm::MutexLock lock(h.producer_lock, s.segment.holder(), deadline);
    if (!lock.locked()) return false;
    if (lock.owner_died()) h.recoveries.fetch_add(1, std::memory_order_relaxed);
    const uint64_t tail_word = h.tail.load(std::memory_order_relaxed);  // only mutex holders write it
    const Position tail = Position::unpack(tail_word);
    const bool cached = s.last_tail_written.load(std::memory_order_relaxed) == tail_word;
    Position head = cached ? Position::unpack(s.cached_head.load(std::memory_order_relaxed)) : load(h.head);
    // A cached head that no longer fits the tail, or was too old to find room: look again.
    bool fresh = !cached;
    std::optional<Placement> placement;
    uint64_t reserved_end = 0;  // the memory held when planned
    for (;;) {
      if (plausible(shape, head, tail)) {
        reserved_end = reserved_ring(s);
        const bool jump_flagged = h.jump_pending.load(std::memory_order_relaxed) != 0;
        placement =
            place(head, tail, need, shape, reserved_end, jump_flagged, [&] { return read_growth(s, head, tail); });
        // Growing takes memory for good: not on the word of a cached head.
        if (fresh || (placement && placement->grows_to == 0)) break;
      } else if (fresh) {
        lock.unlock();
        reset_corrupted(s, describe(head, tail), deadline);
      }
      head = load(h.head);
      fresh = true;
    }
    if (placement) {
      const uint64_t write_at = placement->write_at;
      const uint64_t grows_to = placement->grows_to;
      // The common case, a record at the tail inside the memory held, passes one test here.
      if ((grows_to | placement->marker) != 0 || size >= kLargeMessage) [[unlikely]] {
        if (grows_to != 0 && reserved_end >= kPacedGrowthFrom && !paced_growth && distance(head, tail) != 0) {
          // A big ring that is full: a consumer working through it usually takes something
          // within microseconds, and the stream then goes on in memory that is warm. It is
          // paced as a full ring is, so that the producer comes back to a batch of room
          // rather than to each message the consumer takes (in lockstep, a 64 B typed stream
          // ran at four fifths of its speed and grew its ring on every scheduling hiccup).
          // Past kGrowthPace the ring grows (a stuck consumer costs one such wait a step).
          paced_growth = true;
          lock.unlock();
          if (!waited) paced_wait(s.producer_pacing_ns, deadline, [&] { return half_full(s); });
          waited = true;
          const Clock::time_point paced_until = Clock::now() + kGrowthPace;
          wait_for_change(s, h.head, head.count, h.producers_sleeping,
                          deadline && *deadline < paced_until ? *deadline : paced_until);
          continue;
        }
        if (grows_to != 0) {
          grow(s, reserved_end, grows_to);  // MemoryError: nothing written
        } else if (size >= kLargeMessage && write_at + need > shape.base) {
          memory_in_use(h);
        }
        if (placement->marker == RecordHeader::kWrap) {
          *reinterpret_cast<RecordHeader*>(s.ring + tail.offset) = RecordHeader{0, RecordHeader::kWrap};
          h.wrap_point.store(tail.offset, std::memory_order_relaxed);
        } else if (placement->marker == RecordHeader::kJump) {
          *reinterpret_cast<RecordHeader*>(s.ring + tail.offset) =
              RecordHeader{static_cast<uint32_t>(write_at), RecordHeader::kJump};
          h.jump_count.store(tail.count, std::memory_order_relaxed);
          h.jump_pending.store(1, std::memory_order_relaxed);
        }
      }
      auto* record = reinterpret_cast<RecordHeader*>(s.ring + write_at);
      record->size = static_cast<uint32_t>(size);
      record->flags = 0;
      fill(ctx, s.ring + write_at + sizeof(RecordHeader));  // may throw: nothing published
      // Every placement ends inside the ring; one that ends at its end wraps (no division
      // on this path: it costs more than the rest of the put's arithmetic).
      uint64_t next = write_at + need;
      if (next == shape.capacity) [[unlikely]] {
        next = 0;
        h.wrap_point.store(shape.capacity, std::memory_order_relaxed);
      }
      const uint64_t published = Position{tail.count + 1, static_cast<uint32_t>(next)}.pack();
      s.cached_head.store(head.pack(), std::memory_order_relaxed);
      s.last_tail_written.store(published, std::memory_order_relaxed);
      publish_and_wake(s, h.tail, published, h.consumers_sleeping, shm::WaitFor::kMessage);
      return true;
    }
    // Full: release the mutex and wait for a consumer to move the head past what we saw.
    lock.unlock();
    if (!waited) paced_wait(s.producer_pacing_ns, deadline, [&] { return half_full(s); });
    waited = true;
    if (!wait_for_change(s, h.head, head.count, h.producers_sleeping, deadline)) return false;
  }
}

template <ByteQueue::Taking taking>
bool ByteQueue::take_raw(void (*consume)(void*, std::span<const std::byte>), void* ctx, Deadline deadline) {
  QueueState& s = *state_;
  QueueHeader& h = *s.header;
  bool waited = false;
  for (;;) {
    shm::MutexLock lock(h.consumer_lock, s.segment.holder(), deadline);
    if (!lock.locked()) return false;
    if (lock.owner_died()) h.recoveries.fetch_add(1, std::memory_order_relaxed);
    const Position head = load(h.head, std::memory_order_relaxed);  // only mutex holders write it
    Position tail = Position::unpack(s.cached_tail.load(std::memory_order_relaxed));
    // The cached tail is this process's own, and may be from before another process reset the
    // queue: only the segment's tail can prove the queue corrupted.
    if (static_cast<int32_t>(distance(head, tail)) <= 0 || !plausible(s.shape, head, tail)) {
      tail = load(h.tail);
      s.cached_tail.store(tail.pack(), std::memory_order_relaxed);
    }
    if (!plausible(s.shape, head, tail)) {
      lock.unlock();
      reset_corrupted(s, describe(head, tail), deadline);
    }
    if (distance(head, tail) == 0) {
      drained(s, head);
      // Memory still to give back: this wait comes back for it once it has settled.
      const EmptyWait wait = empty_wait(s, deadline);
      lock.unlock();
      if (!waited && s.streaming.load(std::memory_order_relaxed)) {
        paced_wait(s.consumer_pacing_ns, deadline, [&] { return !half_full(s); });
      }
      waited = true;
      if (!wait_for_change(s, h.tail, tail.count, h.consumers_sleeping, wait.until) && !wait.for_memory) return false;
      continue;
    }
    const std::optional<Record> record = record_at(s, head, tail);
    if (!record) {
      lock.unlock();
      reset_corrupted(s, "no valid record at offset " + std::to_string(head.offset) + "; " + describe(head, tail),
                      deadline);
    }
    std::exception_ptr failure;
    try {
      consume(ctx, {s.ring + record->at + sizeof(RecordHeader), record->size});
    } catch (...) {
      failure = std::current_exception();  // the message is consumed all the same
    }
    if constexpr (taking == Taking::kLeave) {
      lock.unlock();
      if (failure) std::rethrow_exception(failure);
      return true;
    }
    const Position next{head.count + 1, static_cast<uint32_t>(record->next)};
    if (record->size >= kLargeMessage) memory_in_use(h);
    publish_and_wake(s, h.head, next.pack(), h.producers_sleeping, shm::WaitFor::kRoom);
    if (next.count == tail.count) drained(s, next);
    lock.unlock();
    if (s.streaming.load(std::memory_order_relaxed) == waited) s.streaming.store(!waited, std::memory_order_relaxed);
    if (failure) std::rethrow_exception(failure);
    return true;
  }
}

bool ByteQueue::get_raw(void (*consume)(void*, std::span<const std::byte>), void* ctx, Deadline deadline) {
  return take_raw<Taking::kRemove>(consume, ctx, deadline);
}

bool ByteQueue::peek_raw(void (*consume)(void*, std::span<const std::byte>), void* ctx, Deadline deadline) {
  return take_raw<Taking::kLeave>(consume, ctx, deadline);
}

namespace {

void copy_in(void* message, std::byte* dst) {
  const auto& bytes = *static_cast<const std::span<const std::byte>*>(message);
  if (!bytes.empty()) std::memcpy(dst, bytes.data(), bytes.size());
}

void copy_out(void* out, std::span<const std::byte> bytes) {
  static_cast<std::vector<std::byte>*>(out)->assign(bytes.begin(), bytes.end());
}

}  // namespace

// Each of these computes its deadline from the caller's arguments and goes straight to
// put_raw/get_raw; the Timeout comes by reference. Passed by value (in two registers) and
// forwarded, GCC stored the optional<double> in halves and reloaded it as one word, a
// failed store forward in the caller and again in here: a third of a small put's time.
void ByteQueue::put_bytes(std::span<const std::byte> message, bool block, const Timeout& timeout) {
  if (!put_raw(message.size(), &copy_in, &message, deadline(block, timeout))) throw Full();
}

bool ByteQueue::try_put_bytes(std::span<const std::byte> message, const Timeout& timeout) {
  return put_raw(message.size(), &copy_in, &message, deadline(true, timeout));
}

std::vector<std::byte> ByteQueue::get_bytes(bool block, const Timeout& timeout) {
  std::vector<std::byte> out;
  if (!get_raw(&copy_out, &out, deadline(block, timeout))) throw Empty();
  return out;
}

std::vector<std::byte> ByteQueue::peek_bytes(bool block, const Timeout& timeout) {
  std::vector<std::byte> out;
  if (!peek_raw(&copy_out, &out, deadline(block, timeout))) throw Empty();
  return out;
}

std::optional<std::vector<std::byte>> ByteQueue::try_get_bytes(const Timeout& timeout) {
  std::vector<std::byte> out;
  if (!get_raw(&copy_out, &out, deadline(true, timeout))) return std::nullopt;
  return out;
}

bool ByteQueue::wait_for_message(const Timeout& timeout) {
  QueueState& s = *state_;
  QueueHeader& h = *s.header;
  const Deadline deadline = ByteQueue::deadline(true, timeout);
  for (;;) {
    const uint32_t observed = load(h.tail).count;  // before the count: a put after it wakes us
    if (qsize() > 0) return true;
    return_memory();  // what has settled, as a get that finds the queue empty gives it back
    const EmptyWait wait = empty_wait(s, deadline);
    if (!wait_for_change(s, h.tail, observed, h.consumers_sleeping, wait.until) && !wait.for_memory) {
      return qsize() > 0;
    }
  }
}

size_t ByteQueue::qsize() const noexcept {
  const QueueHeader& h = *state_->header;
  // Head first: the count can only be overstated by puts racing in, never negative.
  const Position head = load(h.head);
  return messages_between(state_->shape, head, load(h.tail));
}

bool ByteQueue::full() const noexcept {
  const size_t maxsize = state_->shape.maxsize;
  if (maxsize != 0) return qsize() >= maxsize;
  return false;  // bounded by bytes only: "full" depends on the next message's size
}

void ByteQueue::close() noexcept { state_->closed.store(true); }
bool ByteQueue::closed() const noexcept { return state_->closed.load(); }

void ByteQueue::task_done() {
  QueueState& s = *state_;
  QueueHeader& h = *s.header;
  uint32_t done = h.done.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t puts = load(h.tail).count;
    if (done == puts) throw ValueError("task_done() called too many times");
    if (h.done.compare_exchange_weak(done, done + 1, std::memory_order_seq_cst)) break;
  }
  // The seq_cst increment pairs with join()'s seq_cst flag exchange, as in publish_and_wake.
  if (h.joiners_sleeping.load(std::memory_order_seq_cst) != 0 && h.joiners_sleeping.exchange(0) != 0) {
    wake(s, &h.done, shm::WaitFor::kJoin);
  }
}

void ByteQueue::join(Timeout timeout) {
  QueueHeader& h = *state_->header;
  const Deadline until = deadline(true, timeout);
  for (;;) {
    const uint32_t done = h.done.load(std::memory_order_acquire);
    if (done == load(h.tail).count) return;
    h.joiners_sleeping.exchange(1, std::memory_order_seq_cst);
    if (h.done.load(std::memory_order_seq_cst) == load(h.tail).count) return;
    if (until && Clock::now() >= *until) throw TimeoutError("join() timed out with unfinished tasks");
    detail::futex_wait(&h.done, done, detail::bounded_sleep(until));
  }
}

QueueInfo ByteQueue::info() const {
  QueueInfo info = detail::describe_queue(state_->shape, *state_->header);
  info.name = state_->segment.name();
  info.bytes_reserved = state_->segment.reserved_bytes();
  return info;
}

Deadline ByteQueue::memory_returns_at() const {
  const auto settled = settles_at(*state_);
  if (!settled) return std::nullopt;
  return *settled + kCoarseClockLag;  // so that the coarse clock has passed it too
}

void ByteQueue::return_memory() {
  QueueState& s = *state_;
  QueueHeader& h = *s.header;
  if (!settled_now(settles_at(s))) return;
  // Nothing unless the tail is at the head too.
  run_as_sole_consumer([&] { drained(s, load(h.head, std::memory_order_relaxed)); });
}

shm::DoorbellTable& ByteQueue::doorbell_table() const noexcept { return state_->header->doorbells; }

const shm::Holder& ByteQueue::holder() const noexcept { return state_->segment.holder(); }

Sharing ByteQueue::doorbell_access() const {
  // Whoever may open a named queue may ring its waiters: its file's bits, and its group
  // when the group's bits are what let its members in (everyone else's bits need none).
  // An anonymous queue's sharers inherited or were handed it, all as this user.
  Sharing access;
  if (state_->segment.name().empty()) return access;
  struct stat st {};
  if (::fstat(state_->segment.fd(), &st) != 0) throw_os_error("fstat", errno);
  access.mode = st.st_mode & 0666;
  if ((access.mode & 0060) != 0 && (access.mode & 0006) == 0) access.group = st.st_gid;
  return access;
}

uint32_t ByteQueue::watched_count(shm::WaitFor change) const noexcept {
  const QueueHeader& h = *state_->header;
  switch (change) {
    case shm::WaitFor::kMessage: return load(h.tail, std::memory_order_seq_cst).count;
    case shm::WaitFor::kRoom: return load(h.head, std::memory_order_seq_cst).count;
    case shm::WaitFor::kJoin: break;
  }
  return h.done.load(std::memory_order_seq_cst);
}

void ByteQueue::announce_waiter(shm::WaitFor change) const noexcept {
  QueueHeader& h = *state_->header;
  std::atomic<uint32_t>& flag = change == shm::WaitFor::kMessage ? h.consumers_sleeping
                                : change == shm::WaitFor::kRoom  ? h.producers_sleeping
                                                                 : h.joiners_sleeping;
  flag.exchange(1, std::memory_order_seq_cst);  // see publish_and_wake
}

bool ByteQueue::run_as_sole_consumer_raw(void (*f)(void*), void* ctx) {
  QueueState& s = *state_;
  QueueHeader& h = *s.header;
  shm::MutexLock lock(h.consumer_lock, s.segment.holder(), Clock::time_point{});
  if (!lock.locked()) return false;
  if (lock.owner_died()) h.recoveries.fetch_add(1, std::memory_order_relaxed);
  f(ctx);
  return true;
}

int ByteQueue::anonymous_fd() const noexcept { return state_->segment.name().empty() ? state_->segment.fd() : -1; }

uint64_t ByteQueue::schema_id() const noexcept { return state_->shape.schema_id; }

namespace detail {

QueueShape read_shape(const QueueHeader& h, size_t segment_size, const std::string& what) {
  if (h.magic.load(std::memory_order_acquire) != kQueueMagic) {
    throw ValueError(what + " is not an xproc queue (or is still being created)");
  }
  const uint32_t version = read_shared(h.layout_version);
  if (version != kQueueLayoutVersion) {
    throw ValueError(what + " has queue layout version " + std::to_string(version) + "; this library reads version " +
                     std::to_string(kQueueLayoutVersion));
  }
  const QueueKind kind = read_shared(h.kind);
  const uint64_t capacity = read_shared(h.capacity);
  const uint64_t base = read_shared(h.base);
  const uint64_t max_message = read_shared(h.max_message);
  const bool known_kind = kind == QueueKind::kQueue || kind == QueueKind::kSimple || kind == QueueKind::kJoinable;
  if (!known_kind || capacity < 64 || capacity >= (uint64_t{1} << 32) || capacity % 8 != 0 ||
      segment_size != kRingOffset + capacity || max_message > capacity / 2 - sizeof(RecordHeader) || base < 64 ||
      base > capacity || base % 8 != 0) {
    throw ValueError(what + " has an inconsistent header (kind " + std::to_string(static_cast<uint32_t>(kind)) +
                     ", capacity " + std::to_string(capacity) + ", largest message " + std::to_string(max_message) +
                     ", segment " + std::to_string(segment_size) + " bytes)");
  }
  return QueueShape::make(kind, read_shared(h.schema_id), capacity, base, max_message, read_shared(h.maxsize));
}

QueueInfo describe_queue(const QueueShape& shape, const QueueHeader& h) {
  QueueInfo info;
  info.schema_id = shape.schema_id;
  info.maxsize = shape.maxsize;
  info.capacity_bytes = shape.capacity;
  info.max_message_bytes = shape.max_message;
  info.recoveries = h.recoveries.load(std::memory_order_relaxed);
  info.kind = shape.kind == QueueKind::kSimple     ? "SimpleQueue"
              : shape.kind == QueueKind::kJoinable ? "JoinableQueue"
                                                   : "Queue";
  // Head first: the count can only be overstated by puts racing in, never negative.
  const Position head = load(h.head);
  const Position tail = load(h.tail);
  info.messages = messages_between(shape, head, tail);
  info.put_count = tail.count;
  info.got_count = head.count;
  const uint64_t reserved_end =
      std::clamp<uint64_t>(h.reserved_end.load(std::memory_order_relaxed), shape.base, shape.capacity);
  info.bytes_used = std::min(bytes_in_use(head, tail, reserved_end), reserved_end);
  info.creator_pid = read_shared(h.creator_pid);
  info.created_unix_ns = read_shared(h.created_unix_ns);
  return info;
}

}  // namespace detail

}  // namespace xproc
