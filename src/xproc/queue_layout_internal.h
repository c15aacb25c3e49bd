// The memory layout of a queue segment (documented in docs/protocol.md): a header, then a
// byte ring of records. Layout version 4. Everything here is read and written by several
// processes at once, any of which may write anything: a reader takes the identity fields
// once, when it opens the segment, and checks every position and record against them
// (byte_queue.cpp). The static_asserts pin what other languages may rely on.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "xproc/byte_queue.h"  // QueueKind
#include "xproc/shm/doorbells.h"

namespace xproc::detail {

inline constexpr uint64_t kQueueMagic = 0x3130515250524f58ULL;  // bytes on disk: "XORPRQ01"
inline constexpr uint32_t kQueueLayoutVersion = 4;
inline constexpr size_t kCacheLine = 64;

// A position in the ring packed into one atomic word so that a single store publishes it:
// low 32 bits = messages passed so far (wrapping), high 32 bits = byte offset in the ring.
// The count half is what futexes sleep on (little-endian: it sits at the word's address).
struct Position {
  uint32_t count;
  uint32_t offset;
  static Position unpack(uint64_t word) noexcept {
    return {static_cast<uint32_t>(word), static_cast<uint32_t>(word >> 32)};
  }
  uint64_t pack() const noexcept { return (uint64_t{offset} << 32) | count; }
};
static_assert(std::endian::native == std::endian::little, "futex on the count half needs LE");

// Each record: this header, then the payload padded to 8 bytes. Two markers carry no
// payload: after kWrap readers continue at offset 0, after kJump at the offset in `size`.
struct RecordHeader {
  uint32_t size;   // payload bytes; for kJump, where the next record is
  uint32_t flags;  // 0, kWrap or kJump
  static constexpr uint32_t kWrap = 1;
  static constexpr uint32_t kJump = 2;
};
static_assert(sizeof(RecordHeader) == 8);

struct alignas(kCacheLine) QueueHeader {
  // --- identity (written once, before `magic`) ---
  std::atomic<uint64_t> magic;  // kQueueMagic once fully initialised
  uint32_t layout_version;
  QueueKind kind;
  uint64_t schema_id;        // Cap'n Proto type id of the messages; 0 = untyped bytes
  uint64_t capacity;         // ring bytes (multiple of 8)
  uint64_t max_message;      // largest payload accepted
  uint64_t maxsize;          // message count limit; 0 = bounded by bytes only
  uint64_t created_unix_ns;  // CLOCK_REALTIME at creation
  int32_t creator_pid;
  uint32_t reserved0;
  std::atomic<uint64_t> recoveries;  // locks recovered from dead holders
  uint64_t base;                     // ring bytes reserved at creation and never given back
  // --- the ring's growth (producers write these holding their mutex; see byte_queue.cpp) ---
  std::atomic<uint64_t> reserved_end;  // ring bytes [0, reserved_end) hold memory
  std::atomic<uint64_t> wrap_point;    // where the last WRAP marker went: the end of the upper part
  std::atomic<uint32_t> jump_count;    // the count of the first message after a pending JUMP
  std::atomic<uint32_t> jump_pending;  // 1 while consumers have not passed that JUMP
  std::atomic<uint64_t> grown_at_ns;   // CLOCK_MONOTONIC of the last growth
  uint64_t reserved1;

  // --- the mutexes (shm/mutex.h), each on its own line (each side hammers its own) ---
  alignas(kCacheLine) std::atomic<uint32_t> producer_lock;
  alignas(kCacheLine) std::atomic<uint32_t> consumer_lock;
  // --- sleeper flags, read by the other side after every publish: on lines of their own
  // so that reading them does not steal the line holding the reader's peer's lock ---
  alignas(kCacheLine) std::atomic<uint32_t> producers_sleeping;  // 1: a producer may sleep
  alignas(kCacheLine) std::atomic<uint32_t> consumers_sleeping;  // 1: a consumer may sleep
  // --- published positions, each on its own line ---
  alignas(kCacheLine) std::atomic<uint64_t> tail;  // Position: next write (producers)
  alignas(kCacheLine) std::atomic<uint64_t> head;  // Position: next read (consumers)
  // --- JoinableQueue ---
  alignas(kCacheLine) std::atomic<uint32_t> done;  // task_done() calls (wrapping)
  std::atomic<uint32_t> joiners_sleeping;
  // --- waiters in event loops (shm/doorbells.h): rung when a sleeper flag above is raised ---
  alignas(kCacheLine) shm::DoorbellTable doorbells;
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint64_t>) == 8 && sizeof(std::atomic<uint32_t>) == 4);
static_assert(offsetof(QueueHeader, magic) == 0);
static_assert(offsetof(QueueHeader, producer_lock) % kCacheLine == 0);
static_assert(offsetof(QueueHeader, consumer_lock) - offsetof(QueueHeader, producer_lock) >= kCacheLine);
static_assert(offsetof(QueueHeader, head) - offsetof(QueueHeader, tail) == kCacheLine,
              "producer and consumer positions must not share a cache line");
static_assert(sizeof(QueueHeader) % kCacheLine == 0);
static_assert(sizeof(QueueHeader) == 1664, "layout version 4: header size");
static_assert(offsetof(QueueHeader, doorbells) == 576);
static_assert(offsetof(QueueHeader, base) == 72 && offsetof(QueueHeader, reserved_end) == 80 &&
              offsetof(QueueHeader, wrap_point) == 88 && offsetof(QueueHeader, jump_count) == 96 &&
              offsetof(QueueHeader, jump_pending) == 100 && offsetof(QueueHeader, grown_at_ns) == 104);
static_assert(offsetof(QueueHeader, producer_lock) == 128 && offsetof(QueueHeader, consumer_lock) == 192);
static_assert(offsetof(QueueHeader, tail) == 384 && offsetof(QueueHeader, head) == 448);
static_assert(offsetof(QueueHeader, producers_sleeping) == 256 && offsetof(QueueHeader, consumers_sleeping) == 320);

inline constexpr size_t kRingOffset = sizeof(QueueHeader);

inline constexpr uint64_t round_up8(uint64_t n) noexcept { return (n + 7) & ~uint64_t{7}; }

// Reads a field of shared memory exactly once. Another process may change it at any moment;
// a plain read may be made twice by the compiler, and checked as one value and used as another.
// (clang's __atomic_load_n takes integers and pointers only: an enum is read as its
// underlying integer.)
template <typename T>
T read_shared(const T& field) noexcept {
  if constexpr (std::is_enum_v<T>) {
    using Underlying = std::underlying_type_t<T>;
    return static_cast<T>(__atomic_load_n(reinterpret_cast<const Underlying*>(&field), __ATOMIC_RELAXED));
  } else {
    return __atomic_load_n(&field, __ATOMIC_RELAXED);
  }
}

// What a process knows of a queue for as long as it has it open: the identity fields of the
// header, taken once at open (or chosen at creation) and checked, then never read again.
struct QueueShape {
  QueueKind kind;
  uint64_t schema_id;
  uint64_t capacity;      // ring bytes: a multiple of 8, at least 64, below 4 GiB
  uint64_t base;          // ring bytes always reserved: a multiple of 8, at most capacity
  uint64_t max_message;   // at most capacity / 2 - 8
  uint64_t maxsize;       // 0: bounded by bytes only
  uint32_t max_messages;  // the most records the ring can hold (each takes 8 bytes or more)

  static QueueShape make(QueueKind kind, uint64_t schema_id, uint64_t capacity, uint64_t base, uint64_t max_message,
                         uint64_t maxsize) noexcept {
    const uint64_t by_bytes = capacity / sizeof(RecordHeader);
    const uint64_t most = maxsize != 0 && maxsize < by_bytes ? maxsize : by_bytes;
    return {kind, schema_id, capacity, base, max_message, maxsize, static_cast<uint32_t>(most)};
  }
};

// The shape of the queue whose header is `h`, in a segment of `segment_size` bytes.
// ValueError naming `what` when the header is not one of a complete queue of this layout
// version, or disagrees with the segment's size.
QueueShape read_shape(const QueueHeader& h, size_t segment_size, const std::string& what);

// What the header `h` of a queue of `shape` says now (QueueInfo without a name).
QueueInfo describe_queue(const QueueShape& shape, const QueueHeader& h);

}  // namespace xproc::detail
