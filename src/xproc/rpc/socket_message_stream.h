// Cap'n Proto messages over a connected socket, for kj's RpcSystem (the Manager's server
// and the clients' promise API).
//
// What it does instead of capnp's own AsyncIoMessageStream over kj's socket stream:
//
// - Reads whatever the socket holds into a 64 KiB buffer and hands out each message whose
//   bytes are all in as an already-fulfilled promise: capnp's reader takes three chained
//   reads (first word, segment table, segments) and a promise node for each per message.
//   A larger message is read straight into words of its own.
// - Gathers the messages written during one turn of the event loop and sends them with
//   one sendmsg() at its end (a pipelining client's replies; a server answering many
//   calls on one connection).
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

namespace xproc::rpc {

// Takes ownership of `fd`, a connected stream socket, and makes it non-blocking.
kj::Own<capnp::MessageStream> socket_message_stream(kj::UnixEventPort& port, int fd);

// The socket of a stream kj made (an accepted connection), as a descriptor of its own;
// the stream is closed.
int take_socket(kj::Own<kj::AsyncIoStream> stream);

}  // namespace xproc::rpc
