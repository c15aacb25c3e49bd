// A kj stream over a connected socket that asks the event loop about reads only.
//
// kj's own socket stream registers its descriptor for reads and writes, edge-triggered.
// A unix socket reports "writable" again each time the peer reads what was sent, so a
// process sleeping in the event loop is woken whenever the other side takes its request
// or reply: for a Manager call that is a second, useless wake-up in the client (the
// server reading the request) and one in an idle server (the client reading the reply).
// This stream writes without waiting, and only when the socket is full does it watch
// for room, through a duplicate descriptor registered for writes alone, until the write
// is done.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

namespace xproc::rpc {

// Takes ownership of `fd`, a connected stream socket, and makes it non-blocking.
kj::Own<kj::AsyncIoStream> wrap_socket(kj::UnixEventPort& port, int fd);

// Takes over the socket of a stream kj made (an accepted connection).
kj::Own<kj::AsyncIoStream> rewrap_socket(kj::UnixEventPort& port, kj::Own<kj::AsyncIoStream> stream);

}  // namespace xproc::rpc
