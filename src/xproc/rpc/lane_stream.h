// The Manager server's side of shared-memory lanes (lane.h): the handshake on a freshly
// accepted connection, the message stream kj's RpcSystem reads and writes through a lane,
// and the hooks the serve loop uses to look at every lane while it spins.
//
// While the serve loop spins, a lane stream waiting for bytes (or for room) is woken by
// poll_lanes(), which only reads shared memory. Before the loop sleeps, lanes_may_sleep()
// raises each waiting stream's flag, so that the client's next write rings the doorbell
// (a byte on the socket, which epoll sees); a stream that starts waiting while the loop
// sleeps raises its flag at once. lanes_awake() takes the flags down after the sleep.
#pragma once

#include <optional>
#include <string>

#include <capnp/serialize-async.h>
#include <kj/async-unix.h>

#include "xproc/fd.h"

namespace xproc::rpc {

class MessageGuard;  // buffered_message_stream.h

// The message stream for a connection accepted on `fd` (owned from here on): a lane when
// the client asks for one first thing, proves it knows `authkey` (when there is one), and
// the server can make one; else the socket itself (socket_message_stream.h). Resolves once
// the client's first bytes tell which; fails (the connection is to be closed) when the
// client answers the lane challenge wrongly. Every message read is checked by `guard`.
// `authkey` and `guard` must outlive the promise and the stream.
kj::Promise<kj::Own<capnp::MessageStream>> accept_message_stream(kj::UnixEventPort& port, Fd fd,
                                                                 const std::optional<std::string>& authkey,
                                                                 MessageGuard& guard);

// Wakes the lane streams of this thread whose wait is over; true if any woke.
bool poll_lanes();
// About to sleep: false (and nothing changed) if some lane already has what its stream
// waits for; true once every waiting stream's flag is up.
bool lanes_may_sleep();
// Back from sleep (or not going): flags down.
void lanes_awake();

}  // namespace xproc::rpc
