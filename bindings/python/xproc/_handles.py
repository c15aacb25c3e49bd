"""Connections and sockets inside messages: their descriptors travel beside the Value, as
multiprocessing pickles them into a queue or a pipe.

The sending process shares each descriptor, once, through multiprocessing's resource
sharer (a unix socket behind multiprocessing's HMAC handshake, with the authkey its
children inherit); the message carries a Handle (``schema/xproc/value.capnp``) naming the
sharer and the keys. The receiver fetches the descriptors only from a sharer that runs as
its own user (or root), each within FETCH_TIMEOUT_SECONDS, and rebuilds the object: a
message cannot make it answer a login challenge anywhere else.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from multiprocessing import current_process, reduction, resource_sharer
from multiprocessing.connection import Connection as _SharerConnection
from multiprocessing.connection import answer_challenge, deliver_challenge
from typing import Any, List, Optional, Tuple

# How long fetching one descriptor may take: the connection, the handshake, the descriptor.
FETCH_TIMEOUT_SECONDS = 30.0

# The most descriptors one object has (a shared-memory Pipe end has six).
_MOST_DESCRIPTORS = 6


def share(obj: Any) -> Optional[Tuple[str, List[int], str, Any]]:
    """(sharer, keys, kind, details) for a Connection or a socket, whose descriptors are now
    shared for one fetch each; None for any other object."""
    connection = sys.modules.get("xproc.connection")  # not imported: obj is no Connection
    if connection is not None and isinstance(obj, connection.Connection):
        kind, fds, details = obj._handles()
    elif isinstance(obj, socket.socket):
        kind, fds, details = "socket", [obj.fileno()], (int(obj.family), int(obj.type), obj.proto)
    else:
        return None
    # DupFd duplicates the descriptor and registers it with this process's sharer; its _id
    # is (the sharer's address, the key), which multiprocessing's own pickle carries.
    shared = [resource_sharer.DupFd(fd) for fd in fds]
    return (shared[0]._id[0], [duplicate._id[1] for duplicate in shared], kind, details)


def take(sharer: str, keys: List[int], kind: str, details: Any) -> Any:
    """The object a received Handle stands for, its descriptors fetched from `sharer`."""
    if not 1 <= len(keys) <= _MOST_DESCRIPTORS:
        raise ValueError(f"a handle of {len(keys)} descriptors (at most {_MOST_DESCRIPTORS})")
    fds: List[int] = []
    try:
        for key in keys:
            fds.append(_fetch(sharer, key))
        owned, fds = fds, []  # the object owns them from here
        return _rebuild(kind, owned, details)
    finally:
        for fd in fds:
            os.close(fd)


def _rebuild(kind: str, fds: List[int], details: Any) -> Any:
    if kind == "socket" and len(fds) == 1:
        family, type_, proto = details
        return socket.socket(int(family), int(type_), int(proto), fileno=fds[0])
    from .connection import _connection_from

    return _connection_from(kind, fds, details)


def _fetch(sharer: str, key: int) -> int:
    """One descriptor from a resource sharer of this user, as multiprocessing's
    resource_sharer.DupFd.detach fetches it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(FETCH_TIMEOUT_SECONDS)
        sock.connect(sharer)  # an address that is not a unix socket's fails here
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", credentials)
        if uid not in (os.geteuid(), 0):
            raise PermissionError(f"the sharer of a received handle ({sharer!r}) runs as uid {uid}, "
                                  "not as this process's user: nothing was fetched")
        # The handshake below reads with blocking calls: the kernel ends each at the deadline.
        sock.settimeout(None)
        deadline = struct.pack("ll", int(FETCH_TIMEOUT_SECONDS), 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, deadline)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, deadline)
        connection = _SharerConnection(sock.detach())
    finally:
        sock.close()
    with connection:
        authkey = bytes(current_process().authkey)
        answer_challenge(connection, authkey)
        deliver_challenge(connection, authkey)
        connection.send((key, os.getpid()))
        return reduction.recv_handle(connection)
