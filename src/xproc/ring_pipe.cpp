// RingPipe (ring_pipe_internal.h): the memory and eventfds the two ends of a shared-memory
// Pipe() share.
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <new>
#include <string>
#include <utility>

#include "xproc/errors.h"
#include "xproc/ring_pipe_internal.h"

namespace xproc::detail {

namespace {

// Payloads above this (or a quarter of the ring, when smaller) go over the socket: a
// ring holds several of the largest inline messages, so a sender rarely waits for room.
constexpr size_t kLargestInline = 64 * 1024;

// The ring of the direction a one-way pipe does not use: the smallest a queue can be.
constexpr size_t kUnusedRingBytes = 64;

QueueOptions ring_options(size_t ring_bytes) {
  QueueOptions options;
  options.capacity_bytes = ring_bytes;
  return options;
}

Fd make_eventfd() {
  Fd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) throw_os_error("eventfd", errno);
  return fd;
}

}  // namespace

RingPipe::RingPipe(size_t ring_bytes, bool duplex)
    : ring{ByteQueue(ring_options(ring_bytes)), ByteQueue(ring_options(duplex ? ring_bytes : kUnusedRingBytes))},
      control_segment(shm::Segment::anonymous(sizeof(PipeControl))),
      control(new (control_segment.data()) PipeControl{}),
      wake_fd{make_eventfd(), make_eventfd()},
      inline_limit(std::min(kLargestInline, ring_bytes / 4)) {
  control->version = kPipeControlVersion;
  control->magic.store(kPipeControlMagic, std::memory_order_release);
}

RingPipe::RingPipe(ByteQueue ring0, ByteQueue ring1, shm::Segment control_memory, Fd wake0, Fd wake1)
    : ring{std::move(ring0), std::move(ring1)},
      control_segment(std::move(control_memory)),
      control(reinterpret_cast<PipeControl*>(control_segment.data())),
      wake_fd{std::move(wake0), std::move(wake1)},
      inline_limit(std::min(kLargestInline, ring[0].info().capacity_bytes / 4)) {
  if (control_segment.size() < sizeof(PipeControl) ||
      control->magic.load(std::memory_order_acquire) != kPipeControlMagic || control->version != kPipeControlVersion) {
    throw ValueError("not the control block of an xproc pipe (layout version " + std::to_string(kPipeControlVersion) +
                     ")");
  }
}

}  // namespace xproc::detail
