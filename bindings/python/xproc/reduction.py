"""``multiprocessing.reduction`` for xproc's connections: ``send_handle`` and
``recv_handle`` move a descriptor over the unix socket under a Pipe end (a shared-memory
end has one beside its rings) or a Listener connection, as multiprocessing's do over its
socket connections. Everything else is multiprocessing.reduction's own.

As with multiprocessing, the descriptor shares the socket's byte stream with the
connection's own traffic: send it while no message larger than the ring is on its way.
"""

from __future__ import annotations

import array
import os
import socket
from multiprocessing import reduction as _reduction
from multiprocessing.reduction import *  # noqa: F401,F403 (the rest of the module, unchanged)
from typing import Any


def _socket_fileno(conn: Any) -> int:
    from .connection import Connection

    if isinstance(conn, Connection) and conn._engine.shared_memory:
        return conn._engine.handles()[0]  # the end's socket (fileno() is a readiness descriptor)
    return conn.fileno()


def send_handle(conn: Any, handle: int, destination_pid: int) -> None:
    """Sends descriptor `handle` over `conn` (an xproc or a multiprocessing connection)."""
    del destination_pid  # Windows needs it; a unix socket carries the descriptor itself
    with socket.fromfd(_socket_fileno(conn), socket.AF_UNIX, socket.SOCK_STREAM) as s:
        _reduction.sendfds(s, [handle])


# What a shared-memory end's sender puts on the socket to wake a sleeping receiver: one
# zero byte and no descriptors. recv_handle passes over it (its receiver looks at its ring
# again by itself).
_WAKE_UP_TOKEN = b"\0"


def recv_handle(conn: Any) -> int:
    """Receives a descriptor send_handle sent over `conn`."""
    room = socket.CMSG_SPACE(array.array("i").itemsize)
    with socket.fromfd(_socket_fileno(conn), socket.AF_UNIX, socket.SOCK_STREAM) as s:
        msg, ancdata, _flags, _address = s.recvmsg(1, room)
        while msg == _WAKE_UP_TOKEN and not ancdata:
            msg, ancdata, _flags, _address = s.recvmsg(1, room)
    if not msg and not ancdata:
        raise EOFError
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(ancdata) != 1 or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise RuntimeError(f"expected one descriptor, received {len(fds)} in {len(ancdata)} items of ancdata")
    return fds[0]
