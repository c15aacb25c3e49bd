// A shared-memory Pipe() whose other end is hostile: the input is written over the
// control block and the ring that end sends into, through a mapping of their memfd as
// another process has one, and what follows is sent on its socket as the chunks of large
// messages; then that end goes away and this end receives. Receiving gives messages,
// DecodeError (a record that cannot be one; the ring carries on), EOFError (the peer is
// gone) or OSError (a message over the limit; the end is closed); never more messages than
// the ring's positions claim, nor more bytes than that many records and the socket held.
// (A hostile count may claim more records than the bytes between the positions hold: the
// reader then goes round the ring again, as it would after a live sender refilled it. And
// the receiver keeps the tail it last read, trusted while the head is behind it: a head
// moved back claims the records up to that tail again, which the hostile end wrote too.)
// No call hangs: a blocking receive is made only while
// the image leaves the locks free (a live lock holder may stall a call without a deadline,
// as documented; the non-blocking calls are made whatever the locks say).
//
// Input: the control block (sizeof(PipeControl) bytes), then the ring's queue segment
// (QueueHeader, then kRingBytes of records), then chunks as [u16 length][bytes]. A short
// input leaves the rest of the pipe as the real one made it.
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_check.h"
#include "xproc/byte_connection.h"
#include "xproc/errors.h"
#include "xproc/queue_layout_internal.h"
#include "xproc/ring_pipe_internal.h"

namespace {

using xproc::detail::PipeControl;
using xproc::detail::QueueHeader;

constexpr size_t kRingBytes = 4096;
constexpr size_t kSegmentBytes = xproc::detail::kRingOffset + kRingBytes;
constexpr int kTurns = 64;

// A shared mapping of a memfd, as the other process has it.
class Mapping {
 public:
  explicit Mapping(int fd) {
    struct stat st {};
    FUZZ_CHECK(::fstat(fd, &st) == 0);
    size_ = static_cast<size_t>(st.st_size);
    data_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    FUZZ_CHECK(data_ != MAP_FAILED);
  }
  ~Mapping() { ::munmap(data_, size_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  std::byte* data() const { return static_cast<std::byte*>(data_); }
  size_t size() const { return size_; }
  // Overwrites the mapping from `offset` with `bytes` (no more than it holds there).
  void write(size_t offset, std::span<const std::byte> bytes) const {
    if (!bytes.empty() && offset < size_)
      std::memcpy(data() + offset, bytes.data(), std::min(bytes.size(), size_ - offset));
  }

 private:
  void* data_;
  size_t size_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  xproc::fuzz::Input input(data, size);
  xproc::ConnectionOptions options;
  options.pipe_ring_bytes = kRingBytes;
  auto ends = xproc::byte_pipe(true, options);
  xproc::ByteConnection& hostile = ends.first;
  xproc::ByteConnection& receiver = ends.second;
  FUZZ_CHECK(hostile.shared_memory() && receiver.shared_memory());

  bool locks_free = true;
  size_t chunk_bytes = 0;
  uint32_t claimed_messages = 0;  // by the ring's positions, as the hostile end left them
  {
    const auto handles = hostile.shared_memory_handles();
    Mapping memory(handles.memory);
    const auto* pipe = reinterpret_cast<const PipeControl*>(memory.data());
    // The ring the hostile end sends into (where the receiver found it when it was made).
    const size_t ring_offset = pipe->ring_offset[handles.side];
    FUZZ_CHECK(memory.size() >= ring_offset + kSegmentBytes);
    const auto* header = reinterpret_cast<const QueueHeader*>(memory.data() + ring_offset);
    using xproc::detail::Position;
    const Position tail_known = Position::unpack(header->tail.load());  // the receiver's cached tail
    memory.write(0, input.take_bytes(sizeof(PipeControl)));
    memory.write(ring_offset, input.take_bytes(kSegmentBytes));
    locks_free = header->consumer_lock.load() == 0 && header->producer_lock.load() == 0 &&
                 pipe->direction[handles.side].large_send.load() == 0;
    const uint32_t head = Position::unpack(header->head.load()).count;
    // What the positions claim, or what the head and the tail the receiver knows claim when
    // the head is behind that one (taking those, it reads the segment's tail again).
    claimed_messages = std::max(Position::unpack(header->tail.load()).count - head,
                                static_cast<uint32_t>(std::max(0, static_cast<int32_t>(tail_known.count - head))));

    while (!input.empty()) {
      const auto length = input.take<uint16_t>();
      const auto chunk = input.take_bytes(length);
      if (::send(handles.socket, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) break;
      chunk_bytes += chunk.size();
    }
  }
  hostile.close();

  size_t received = 0;
  size_t messages = 0;
  auto receive = [&](std::optional<size_t> maxlength, bool block) {
    if (!block) {
      bool taken = receiver.try_recv_in_place([&](std::span<const std::byte> bytes) { received += bytes.size(); });
      messages += taken ? 1 : 0;
      return taken;
    }
    const auto message = receiver.recv_bytes(maxlength);
    FUZZ_CHECK(message.size() <= maxlength.value_or(options.max_message_bytes), "a message over maxlength");
    received += message.size();
    ++messages;
    return true;
  };
  for (int turn = 0; turn < kTurns && !receiver.closed(); ++turn) {
    try {
      if (turn % 4 == 0) receiver.poll(std::chrono::seconds(0));
      const std::optional<size_t> maxlength = turn % 5 == 4 ? std::optional<size_t>(8) : std::nullopt;
      if (!receive(maxlength, locks_free && turn % 2 == 1)) continue;
    } catch (const xproc::DecodeError&) {
    } catch (const xproc::EOFError&) {
      break;
    } catch (const xproc::OSError&) {
      FUZZ_CHECK(receiver.closed(), "OSError left the end open");
    }
    FUZZ_CHECK(messages <= claimed_messages, "more messages received than the ring's positions claim");
    FUZZ_CHECK(received <= messages * kRingBytes + chunk_bytes, "more bytes received than the records and socket held");
  }
  return 0;
}
