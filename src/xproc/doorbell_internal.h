// A doorbell on a unix socket: one byte that wakes a side asleep in poll() on the other
// end. A Pipe's sender rings it for a receiver that said it sleeps (ring_transport.cpp),
// and so does each side of an RPC lane (rpc/lane.h).
#pragma once

#include <sys/socket.h>

#include "xproc/syscall_internal.h"

namespace xproc::detail {

// Never waits: a full socket already holds doorbells its reader has not read, and a gone
// reader shows when this side next reads or polls. (No SIGPIPE: a gone peer is EPIPE.) The
// byte is zero: a Pipe's receiver tells it from the chunks and descriptors on its socket
// by its length and by carrying none.
inline void ring_doorbell(int socket) noexcept {
  const char bell = 0;
  [[maybe_unused]] const ssize_t n =
      retry_on_eintr([&] { return ::send(socket, &bell, 1, MSG_DONTWAIT | MSG_NOSIGNAL); });
}

}  // namespace xproc::detail
