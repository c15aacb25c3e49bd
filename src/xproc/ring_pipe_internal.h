// The shared-memory layout of Pipe(): one ByteQueue ring per direction carries the
// messages, so a send costs no system call that moves data. The socket pair stays: its
// hang-up tells each end that the other is gone (EOFError, BrokenPipeError), and it carries
// the few messages too large for the ring. Wake-ups of a sleeping receiver go through an
// eventfd per direction. RingPipe holds what the two ends share; RingTransport
// (ring_transport_internal.h) is one end. docs/protocol.md ("Pipe over shared memory") has
// the layout and the wake-up argument.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "xproc/byte_queue.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/shm/segment.h"

namespace xproc::detail {

inline constexpr uint64_t kPipeControlMagic = 0x3130435050524f58ULL;  // bytes on disk: "XORPPC01"
inline constexpr uint32_t kPipeControlVersion = 4;
// The control block takes the segment's first page; ring 0's region (its queue header, then
// the ring) follows, then ring 1's, each starting on a page.
inline constexpr size_t kPipeControlBytes = 4096;

// What one direction's receiver and senders agree on, in the control segment.
struct alignas(kCacheLine) PipeDirection {
  // 1: a receiver may be asleep in poll() (or its descriptor is watched): the next send
  // clears it and sends a wake-up token (kTokenBytes) to the receiver's socket. Senders
  // read it after every publish, the receiver raises it before it sleeps: both with
  // sequentially consistent operations, so of "publish, then read armed" and "raise armed,
  // then read the ring" at least one side sees the other's write and no wake-up is lost.
  std::atomic<uint32_t> armed;
  // The sequence number of the last large message (one too large for the ring) a sender
  // began; written under large_send.
  std::atomic<uint64_t> large_seq;
  // A mutex (shm/mutex.h), held from the moment a large message's marker is put into the
  // ring until the last chunk of its payload is on the socket: markers and payloads keep one
  // order, and a receiver waiting for chunks learns from it whether their sender died.
  alignas(kCacheLine) std::atomic<uint32_t> large_send;
};
static_assert(offsetof(PipeDirection, large_seq) == 8);  // after armed and 4 bytes of padding
static_assert(offsetof(PipeDirection, large_send) == kCacheLine);
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

struct PipeControl {
  std::atomic<uint64_t> magic;  // kPipeControlMagic once initialised
  uint32_t version;
  uint32_t reserved;
  // Where each ring's region (its queue header, then the ring) is in the segment, and its
  // bytes. Read once by a process that adopts the pipe, and checked against the segment.
  uint64_t ring_offset[2];
  uint64_t ring_length[2];
  alignas(kCacheLine) PipeDirection direction[2];  // direction[d]: messages sent by end d
};
static_assert(offsetof(PipeControl, ring_offset) == 16);
static_assert(offsetof(PipeControl, direction) == kCacheLine);
static_assert(sizeof(PipeControl) <= kPipeControlBytes);

// Each ring record starts with this; the payload follows (kInline) or is on the socket.
struct PipeRecord {
  uint32_t kind;
  uint32_t reserved;
  uint64_t large_size;  // kLarge only: the payload bytes that follow on the socket
  uint64_t large_seq;   // kLarge only: the number its chunks carry
  static constexpr uint32_t kInline = 0;
  static constexpr uint32_t kLarge = 1;
  static constexpr size_t kInlineHeader = 8;  // kind + reserved, then the payload
};
static_assert(sizeof(PipeRecord) == 24);

// A large payload crosses the socket (a SOCK_SEQPACKET pair: each chunk arrives whole or
// not at all) in chunks of at most kLargeChunk bytes, each behind this header. A reader
// knows a chunk of a message whose reader or sender died by its number. Between chunks
// there may be wake-up tokens: packets of kTokenBytes (one zero byte), shorter than any
// chunk and without descriptors (xproc.reduction.send_handle's packets have one).
struct LargeChunk {
  uint64_t seq;     // PipeRecord::large_seq of the message
  uint64_t offset;  // where this chunk's bytes go in the payload
  static constexpr size_t kLargeChunk = 64 * 1024;
};
static_assert(sizeof(LargeChunk) == 16);
inline constexpr size_t kTokenBytes = 1;

// What the two ends of one pipe share within a process (both ends after Pipe(), or the
// one end a forked child keeps using). Owns the mapping.
struct RingPipe {
  std::shared_ptr<const shm::Segment> memory;  // the control block, then the two rings
  PipeControl* control;
  ByteQueue ring[2];    // ring[d]: messages sent by end d
  size_t inline_limit;  // the largest payload carried in the ring

  // Rings of at most ring_bytes per direction, reserved_bytes of each held from the start
  // (0: what an idle pipe keeps); one way: ring 0 only, ring 1 the smallest there is.
  // Throws OSError or ValueError when the memory cannot be had.
  RingPipe(size_t ring_bytes, size_t reserved_bytes, bool duplex);
  // Attaches to a pipe made in another process. ValueError when `memory` is not a pipe's
  // segment of this layout version.
  explicit RingPipe(shm::Segment memory);
  RingPipe(const RingPipe&) = delete;
  RingPipe& operator=(const RingPipe&) = delete;
};

}  // namespace xproc::detail
