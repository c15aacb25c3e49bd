// Cap'n Proto messages over a connected socket, for kj's RpcSystem (the Manager's server
// and the clients' promise API).
//
// What it does instead of capnp's own AsyncIoMessageStream over kj's socket stream:
//
// - Buffered reads and one send() per turn of the event loop (buffered_message_stream.h):
//   capnp's reader takes three chained reads (first word, segment table, segments) and a
//   promise node for each per message.
// - Asks the event loop about reads only. kj's socket stream watches for writability
//   too, and a unix socket turns writable each time the peer reads, so an idle loop was
//   woken for nothing once per message it had sent (a client asleep for its reply was
//   first woken when the server read the request). Only while the socket is full is a
//   duplicate descriptor watched for room.
//
// The bytes on the wire are the standard serialization, one message after another.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>

#include "xproc/fd.h"

namespace xproc::rpc {

class MessageGuard;  // buffered_message_stream.h

// Takes ownership of `fd`, a connected stream socket, and makes it non-blocking. With a
// guard (a server's connection), every message read is checked by it.
kj::Own<capnp::MessageStream> socket_message_stream(kj::UnixEventPort& port, int fd, MessageGuard* guard = nullptr);

// The socket of a stream kj made (an accepted connection), as a descriptor of its own;
// the stream is closed.
Fd take_socket(kj::Own<kj::AsyncIoStream> stream);

}  // namespace xproc::rpc
