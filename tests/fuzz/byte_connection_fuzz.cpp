// ByteConnection's framing (CPython's: a 4-byte big-endian signed length, or -1 and an
// 8-byte length, then the payload) reading arbitrary bytes a peer sent and then closed
// with: recv_bytes gives exactly the messages the bytes frame, then EOFError (the stream
// ended, even mid-message) or OSError (a negative length, or one over the limit), nothing
// else. It never allocates much more than the bytes that arrived, whatever length they
// claim, and never waits: every call returns once the bytes are read.
//
// The calls take turns: recv_bytes, the in-place receive a binding uses, recv_bytes_into
// a small buffer (BufferTooShort carries the whole message) and recv_bytes with a
// maxlength.
#include <sanitizer/allocator_interface.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_check.h"
#include "xproc/byte_connection.h"
#include "xproc/errors.h"

namespace {

// The largest single allocation while `tracking` (the sanitizer's malloc hook).
std::atomic<bool> tracking{false};
std::atomic<size_t> largest_allocation{0};

void on_malloc(const volatile void*, size_t size) {
  if (!tracking.load(std::memory_order_relaxed)) return;
  size_t seen = largest_allocation.load(std::memory_order_relaxed);
  while (size > seen && !largest_allocation.compare_exchange_weak(seen, size)) {
  }
}
void on_free(const volatile void*) {}

// What a frame must decode to, by CPython's rules (multiprocessing/connection.py).
struct Frame {
  enum Kind { kMessage, kBadLength, kEnd } kind;
  std::vector<std::byte> payload;
  uint64_t claimed = 0;
};

class Oracle {
 public:
  explicit Oracle(std::span<const std::byte> stream) : stream_(stream) {}

  Frame next(size_t limit) {
    if (stream_.size() < 4) return {Frame::kEnd, {}};
    uint32_t be32;
    std::memcpy(&be32, stream_.data(), 4);
    const auto length = static_cast<int32_t>(__builtin_bswap32(be32));
    stream_ = stream_.subspan(4);
    uint64_t size = static_cast<uint32_t>(length);
    if (length == -1) {
      if (stream_.size() < 8) return {Frame::kEnd, {}};
      uint64_t be64;
      std::memcpy(&be64, stream_.data(), 8);
      size = __builtin_bswap64(be64);
      stream_ = stream_.subspan(8);
    } else if (length < 0) {
      return {Frame::kBadLength, {}, size};
    }
    if (size > limit) return {Frame::kBadLength, {}, size};
    if (stream_.size() < size) return {Frame::kEnd, {}};
    Frame frame{Frame::kMessage, {stream_.begin(), stream_.begin() + static_cast<ptrdiff_t>(size)}, size};
    stream_ = stream_.subspan(size);
    return frame;
  }

 private:
  std::span<const std::byte> stream_;
};

constexpr size_t kMaxMessage = size_t{1} << 30;  // ConnectionOptions' default
// What recv may allocate whatever the stream claims: its read buffer and one step of a
// large message's growth (stream_transport.cpp), beside what actually arrived.
constexpr size_t kAllocationAllowance = (16u << 20) + (64u << 10) + 4096;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  // The whole input is in the socket before the reader starts, and the writer is gone.
  const int buffer = static_cast<int>(std::max<size_t>(size * 2, 4096));
  ::setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  ::setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  for (size_t sent = 0; sent < size;) {
    const ssize_t n = ::send(fds[1], data + sent, size - sent, MSG_NOSIGNAL);
    FUZZ_CHECK(n > 0, "the socket pair did not take the input");
    sent += static_cast<size_t>(n);
  }
  ::close(fds[1]);

  xproc::ByteConnection connection(fds[0], true, false);
  Oracle oracle({reinterpret_cast<const std::byte*>(data), size});
  largest_allocation = 0;
  tracking = true;
  for (int turn = 0;; ++turn) {
    // Turn 3 asks for a maxlength: 1 + a few bytes, so that some frames are over it.
    const std::optional<size_t> maxlength = turn % 4 == 3 ? std::optional<size_t>(1 + turn % 64) : std::nullopt;
    const Frame expected = oracle.next(maxlength.value_or(kMaxMessage));
    std::optional<std::vector<std::byte>> got;
    try {
      switch (turn % 4) {
        case 1: {
          const bool taken = connection.try_recv_in_place(
              [&](std::span<const std::byte> bytes) { got.emplace(bytes.begin(), bytes.end()); });
          if (!taken) got = connection.recv_bytes();
          break;
        }
        case 2: {
          std::byte small[16];
          try {
            got.emplace(small, small + connection.recv_bytes_into(small));
          } catch (const xproc::BufferTooShort& e) {
            FUZZ_CHECK(e.message().size() > sizeof(small));
            const auto* message = reinterpret_cast<const std::byte*>(e.message().data());
            got.emplace(message, message + e.message().size());
          }
          break;
        }
        default: got = connection.recv_bytes(maxlength); break;
      }
    } catch (const xproc::EOFError&) {
      FUZZ_CHECK(expected.kind == Frame::kEnd, "EOFError before the end of the stream");
      break;
    } catch (const xproc::OSError&) {
      FUZZ_CHECK(expected.kind == Frame::kBadLength, "OSError for a frame of an acceptable length");
      FUZZ_CHECK(connection.closed(), "a bad length left the connection open");
      break;
    }
    FUZZ_CHECK(expected.kind == Frame::kMessage, "a message where the stream has none");
    FUZZ_CHECK(*got == expected.payload, "a message differs from the bytes framed");
  }
  tracking = false;
  FUZZ_CHECK(largest_allocation <= 2 * size + kAllocationAllowance, "an allocation far beyond the bytes received");
  return 0;
}
