// A queue segment image from another process, opened and drained: the input becomes the
// header and records of a queue segment (docs/protocol.md, layout version 4) in a sealed
// memfd as large as the input, which ByteQueue::adopt_anonymous opens. Opening refuses a
// header that is not a queue's of this size (ValueError, and only there); then
// non-blocking gets and puts give messages, DecodeError (the queue was found corrupt and
// is reset), Empty or Full, nothing else. Every message got fits the queue's largest
// message, and once a get found the queue empty, a message put is the next one got.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_check.h"
#include "xproc/byte_queue.h"
#include "xproc/errors.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/shm/segment.h"

namespace {

constexpr int kGets = 48;
constexpr size_t kSmallestSegment = xproc::detail::kRingOffset + 64;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t segment_bytes = xproc::detail::round_up8(std::max(size, kSmallestSegment));
  const int fd = xproc::shm::create_sealed_memfd(segment_bytes, "xproc-fuzz");
  FUZZ_CHECK(::pwrite(fd, data, size, 0) == static_cast<ssize_t>(size));

  std::optional<xproc::ByteQueue> opened;
  try {
    opened.emplace(xproc::ByteQueue::adopt_anonymous(fd));  // owns fd from here on
  } catch (const xproc::ValueError&) {
    return 0;
  }
  xproc::ByteQueue& queue = *opened;
  const xproc::QueueInfo info = queue.info();
  FUZZ_CHECK(info.capacity_bytes + xproc::detail::kRingOffset == segment_bytes);
  FUZZ_CHECK(info.max_message_bytes <= info.capacity_bytes / 2 - 8);

  bool found_empty = false;
  for (int i = 0; i < kGets && !found_empty; ++i) {
    FUZZ_CHECK(queue.qsize() <= info.capacity_bytes / 8, "qsize() beyond what the ring can hold");
    try {
      const auto message = queue.get_bytes(false);
      FUZZ_CHECK(message.size() <= info.max_message_bytes, "a message larger than the queue's largest");
    } catch (const xproc::DecodeError&) {
    } catch (const xproc::Empty&) {
      found_empty = true;
    }
  }
  queue.info();

  // A few puts and gets: a queue found empty takes a message and gives back that one.
  const size_t put_size = std::min<size_t>(info.max_message_bytes, 13);
  const std::vector<std::byte> message(put_size, std::byte{0x5a});
  for (int i = 0; i < 3; ++i) {
    bool put = false;
    try {
      queue.put_bytes(message, false);
      put = true;
    } catch (const xproc::DecodeError&) {
    } catch (const xproc::Full&) {
    }
    try {
      const auto got = queue.get_bytes(false);
      FUZZ_CHECK(got.size() <= info.max_message_bytes);
      if (found_empty && put) FUZZ_CHECK(got == message, "a queue found empty gave another message than the one put");
    } catch (const xproc::DecodeError&) {
      found_empty = false;
    } catch (const xproc::Empty&) {
      found_empty = true;
    }
  }
  return 0;
}
