// What the two transports of byte_transport_internal.h share: the checks of a connection's
// state, and the buffer of a small frame.
#include "xproc/byte_transport_internal.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "xproc/errors.h"

namespace xproc::detail {

void ByteTransport::require_open() const {
  if (closed()) throw OSError("handle is closed", EBADF);
}

void ByteTransport::require_readable() const {
  require_open();
  if (!readable_) throw OSError("connection is write-only", EBADF);
}

void ByteTransport::require_writable() const {
  require_open();
  if (!writable_) throw OSError("connection is read-only", EBADF);
}

ByteConnection::SharedMemoryHandles ByteTransport::shared_memory_handles() const {
  throw ValueError("not a shared-memory pipe end");
}

std::byte* SmallFrame::prepare(size_t size) {
  if (kept_) throw ValueError("finish_send() first: an earlier frame is still unsent");
  if (size > ByteConnection::kSmallFrameLimit) {
    throw ValueError("frame of " + std::to_string(size) + " bytes is over the small-frame limit");
  }
  if (buffer_.empty()) buffer_.resize(8 + ByteConnection::kSmallFrameLimit);
  const uint32_t length = htonl(static_cast<uint32_t>(size));
  std::memcpy(buffer_.data() + 4, &length, 4);
  return buffer_.data() + 8;
}

}  // namespace xproc::detail
