// What the two transports of byte_transport_internal.h share: the checks of a connection's
// state, and the buffer of a small frame.
#include "xproc/byte_transport_internal.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "xproc/errors.h"

namespace xproc::detail {

void ByteTransport::throw_closed() { throw OSError("handle is closed", EBADF); }
void ByteTransport::throw_write_only() { throw OSError("connection is write-only", EBADF); }
void ByteTransport::throw_read_only() { throw OSError("connection is read-only", EBADF); }

ByteConnection::SharedMemoryHandles ByteTransport::shared_memory_handles() const {
  throw ValueError("not a shared-memory pipe end");
}

std::byte* SmallFrame::prepare_slowly(size_t size) {
  if (kept_) throw ValueError("finish_send() first: an earlier frame is still unsent");
  if (size > ByteConnection::kSmallFrameLimit) {
    throw ValueError("frame of " + std::to_string(size) + " bytes is over the small-frame limit");
  }
  buffer_.resize(8 + ByteConnection::kSmallFrameLimit);
  return prepare(size);
}

}  // namespace xproc::detail
