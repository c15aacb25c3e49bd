// RingPipe (ring_pipe_internal.h): the memory the two ends of a shared-memory Pipe() share.
#include <algorithm>
#include <memory>
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

// Ring bytes an idle pipe keeps per direction: with its header, two pages (a hundred small
// messages in flight). Reserving memory is most of what making a pipe costs (with the
// control block, 20 KiB take as long as the socket pair); a stream grows the ring.
constexpr size_t kIdleRingBytes = (size_t{8} << 10) - kRingOffset;

constexpr size_t kPage = 4096;

// The ring of direction `d`.
QueueOptions ring_options(int d, size_t ring_bytes, size_t reserved_bytes, bool duplex) {
  QueueOptions options;
  options.capacity_bytes = d == 1 && !duplex ? kUnusedRingBytes : ring_bytes;
  options.reserved_bytes = std::min(options.capacity_bytes, reserved_bytes != 0 ? reserved_bytes : kIdleRingBytes);
  return options;
}

size_t page_round(size_t n) { return (n + kPage - 1) / kPage * kPage; }

// A new segment laid out for rings of these options, its control block written (but for
// the magic, which the finished pipe sets).
std::shared_ptr<const shm::Segment> new_pipe_memory(const QueueOptions& ring0, const QueueOptions& ring1) {
  const size_t length[2] = {ByteQueue::region_bytes(ring0), ByteQueue::region_bytes(ring1)};
  const size_t offset[2] = {kPipeControlBytes, kPipeControlBytes + page_round(length[0])};
  auto memory = std::make_shared<const shm::Segment>(shm::Segment::anonymous(offset[1] + length[1], kPipeControlBytes));
  auto* control = new (memory->data()) PipeControl{};
  control->version = kPipeControlVersion;
  for (int d = 0; d < 2; ++d) control->ring_offset[d] = offset[d];
  for (int d = 0; d < 2; ++d) control->ring_length[d] = length[d];
  return memory;
}

// The control block of a pipe's segment received from another process.
PipeControl* checked_control(const shm::Segment& memory) {
  if (memory.size() < kPipeControlBytes) throw ValueError("too small to be the memory of an xproc pipe");
  auto* control = reinterpret_cast<PipeControl*>(memory.data());
  if (control->magic.load(std::memory_order_acquire) != kPipeControlMagic || control->version != kPipeControlVersion) {
    throw ValueError("not the memory of an xproc pipe (layout version " + std::to_string(kPipeControlVersion) + ")");
  }
  return control;
}

// Ring `d` of a pipe made in another process: its region is read from the control block
// once and must start on a page after the control block (attach_in checks the rest).
ByteQueue attached_ring(const std::shared_ptr<const shm::Segment>& memory, const PipeControl& control, int d) {
  const uint64_t offset = control.ring_offset[d], length = control.ring_length[d];
  const std::string what = "ring " + std::to_string(d) + " of a pipe";
  if (offset < kPipeControlBytes || offset % kPage != 0) throw ValueError(what + " overlaps its control block");
  return ByteQueue::attach_in(memory, offset, length, what);
}

}  // namespace

RingPipe::RingPipe(size_t ring_bytes, size_t reserved_bytes, bool duplex)
    : memory(new_pipe_memory(ring_options(0, ring_bytes, reserved_bytes, duplex),
                             ring_options(1, ring_bytes, reserved_bytes, duplex))),
      control(reinterpret_cast<PipeControl*>(memory->data())),
      ring{ByteQueue::create_in(memory, control->ring_offset[0], ring_options(0, ring_bytes, reserved_bytes, duplex)),
           ByteQueue::create_in(memory, control->ring_offset[1], ring_options(1, ring_bytes, reserved_bytes, duplex))},
      inline_limit(std::min(kLargestInline, ring_bytes / 4)) {
  control->magic.store(kPipeControlMagic, std::memory_order_release);
}

RingPipe::RingPipe(shm::Segment segment)
    : memory(std::make_shared<const shm::Segment>(std::move(segment))),
      control(checked_control(*memory)),
      ring{attached_ring(memory, *control, 0), attached_ring(memory, *control, 1)},
      inline_limit(std::min(kLargestInline, ring[0].info().capacity_bytes / 4)) {}

}  // namespace xproc::detail
