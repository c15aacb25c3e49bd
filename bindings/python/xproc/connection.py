"""Pipe, Connection, Listener, Client and wait: ``multiprocessing.connection`` with
Cap'n Proto payloads.

The framing and the authentication are multiprocessing's own, so CPython's
``multiprocessing.connection.Client`` can talk to an xproc Listener with ``send_bytes``
and ``recv_bytes``, and the reverse. ``send(obj)`` carries a Python value as an xproc
Value message (or, on a connection made with ``schema=``, a pycapnp struct as itself),
which a C++ ``Connection<Value>`` (or ``Connection<T>``) receives.
"""

from __future__ import annotations

import multiprocessing.connection as _mp_connection
import time
from multiprocessing import reduction
from typing import Any, Iterable, List, Optional, Tuple, Union

from . import _awaiting, _xproc
from .queues import _schema_id

__all__ = ["Connection", "Pipe", "Listener", "Client", "wait"]

Address = Union[str, Tuple[str, int]]


class Connection:
    """One end of a Pipe or of a Listener/Client connection, as
    ``multiprocessing.connection.Connection``."""

    def __init__(self, engine: "_xproc.Connection", schema: Any = None) -> None:
        self._engine = engine
        self._schema = schema
        # Bound once: send/recv are one call into C++.
        self.send = engine.send
        self.recv = engine.recv
        self.send_bytes = engine.send_bytes
        self.recv_bytes = engine.recv_bytes
        self.recv_bytes_into = engine.recv_bytes_into
        self.poll = engine.poll

    def send(self, obj: Any) -> None:  # noqa: F811 (bound in __init__)
        """Sends `obj` as one message (``BrokenPipeError`` when the peer is gone)."""
        self._engine.send(obj)

    def recv(self) -> Any:  # noqa: F811
        """Blocks for the next message (``EOFError`` when the peer closed)."""
        return self._engine.recv()

    def send_bytes(self, buf: Any, offset: int = 0, size: Optional[int] = None) -> None:  # noqa: F811
        """Sends ``buf[offset:offset + size]`` (any bytes-like object; offset and size count bytes)
        as one message. BrokenPipeError when the peer is gone; ValueError for a bad
        offset or size."""
        self._engine.send_bytes(buf, offset, size)

    def recv_bytes(self, maxlength: Optional[int] = None) -> bytes:  # noqa: F811
        """Blocks for the next message and returns its bytes. EOFError when the peer closed;
        OSError, and the connection closed, when the message is longer than `maxlength`."""
        return self._engine.recv_bytes(maxlength)

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:  # noqa: F811
        """Reads the next message into `buf` (a writable buffer) from `offset` and returns its size;
        multiprocessing.BufferTooShort, carrying the message, when it does not fit."""
        return self._engine.recv_bytes_into(buf, offset)

    def poll(self, timeout: Optional[float] = 0.0) -> bool:  # noqa: F811
        """Whether a message can be read now; waits up to `timeout` (None: forever)."""
        return self._engine.poll(timeout)

    # --- asyncio: the same operations, awaited without blocking the event loop ---

    async def arecv(self) -> Any:
        """Awaits the next message and returns it, as ``recv()`` (``EOFError`` when the peer
        closed, ``OSError`` when this end is closed or write-only). Any number of tasks may
        await one connection; each message goes to one of them. A cancelled ``arecv`` took
        nothing: the message stays for the next receive.

        The wait is the event loop's; the receive itself is not. Once a message has begun
        to arrive, it is read whole before ``arecv`` returns, blocking the loop meanwhile:
        briefly for most, but a message too large for a shared-memory ring (over 64 KiB on a
        default Pipe) or a socket's buffer is read as its sender writes it."""
        engine = self._engine
        return await _awaiting.receive(self, engine, engine.recv)

    async def arecv_bytes(self, maxlength: Optional[int] = None) -> bytes:
        """Awaits the next message as bytes, as ``recv_bytes(maxlength)`` (a longer one
        closes the connection with ``OSError``); waits and is cancelled as ``arecv``."""
        engine = self._engine
        return await _awaiting.receive(self, engine, lambda: engine.recv_bytes(maxlength))

    async def asend(self, obj: Any) -> None:
        """Sends `obj` as ``send(obj)``, awaiting room in a full shared-memory ring or socket
        (``BrokenPipeError`` when the peer is gone, ``OSError`` when this end is closed or
        read-only). `obj` is encoded at each attempt: do not change it before the call
        returns. A cancelled ``asend`` sent nothing, or, when part of it was already on the
        socket, still sends the rest: the peer never sees half a message.

        A message too large for the connection's buffer (over 64 KiB on a default Pipe's
        shared-memory end, over 4 KiB on a socket) is written whole in one blocking call, as ``send``
        writes it: when the socket cannot hold it, the loop waits until the receiver has
        read it, so that receiver must not be a task of the same loop."""
        engine = self._engine
        await _awaiting.send(self, engine, lambda: engine.send_if_room(obj))

    async def asend_bytes(self, buf: Any, offset: int = 0, size: Optional[int] = None) -> None:
        """Sends ``buf[offset:offset + size]`` as ``send_bytes`` (offset and size count bytes);
        waits, is cancelled and blocks for a large message as ``asend``. Do not change
        `buf` before the call returns."""
        engine = self._engine
        await _awaiting.send(self, engine, lambda: engine.send_bytes_if_room(buf, offset, size))

    def fileno(self) -> int:
        """The descriptor to select or poll on. On a shared-memory end of a Pipe the first call adds
        an epoll descriptor and an eventfd, which every later receive on that end keeps
        current (a few system calls each): connection.wait() does not need it."""
        return self._engine.fileno()

    def close(self) -> None:
        """Closes this end: tasks awaiting it wake and find it closed, the peer sees EOF once no
        process holds the end, later calls raise OSError."""
        _awaiting.forget(self)  # tasks awaiting this end wake, and find it closed
        self._engine.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._engine.closed

    @property
    def readable(self) -> bool:
        """Whether this end receives (False for the sending end of ``Pipe(duplex=False)``)."""
        return self._engine.readable

    @property
    def writable(self) -> bool:
        """Whether this end sends (False for the receiving end of ``Pipe(duplex=False)``)."""
        return self._engine.writable

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        elif self._engine.shared_memory:
            state = "shared memory"  # (not fileno(): handing that out costs every receive)
        else:
            state = f"fd={self.fileno()}"
        return f"<xproc.Connection {state}>"

    def _handles(self) -> Tuple[str, List[int], Tuple[Any, ...]]:
        """What this end is made of, to travel to another process: (kind, descriptors,
        details), as _connection_from takes them. A shared-memory Pipe end has two
        descriptors: its socket and the memory of its rings."""
        schema = f"{self._engine.schema_id:#x}"  # text: a Value's ints are signed 64-bit
        if self._engine.shared_memory:
            *fds, side, readable, writable = self._engine.handles()
            return "pipe_end", fds, (side, readable, writable, schema)
        return "connection", [self.fileno()], (self.readable, self.writable, schema)

    # Pickling (multiprocessing.Process arguments): duplicates of the descriptors travel,
    # as with multiprocessing's connections. (In a message, xproc._handles carries them.)
    def __reduce__(self) -> Any:
        kind, fds, details = self._handles()
        return (_rebuild_connection, (kind, tuple(reduction.DupFd(fd) for fd in fds), details))


def _rebuild_connection(kind: str, duplicates: Tuple[Any, ...], details: Tuple[Any, ...]) -> Connection:
    return _connection_from(kind, [d.detach() for d in duplicates], details)


def _connection_from(kind: str, fds: List[int], details: Any) -> Connection:
    """The end another process's Connection._handles described, over duplicates of its
    descriptors (owned by the end from here)."""
    if kind == "connection" and len(fds) == 1:
        readable, writable, schema = details
        return Connection(_xproc.Connection(fds[0], readable, writable, int(schema, 16)))
    if kind == "pipe_end" and len(fds) == 2:
        side, readable, writable, schema = details
        return Connection(_xproc.Connection.adopt(*fds, side, readable, writable, int(schema, 16)))
    raise ValueError(f"no connection of kind {kind!r} with {len(fds)} descriptors")


def Pipe(duplex: bool = True, *, schema: Any = None) -> Tuple[Connection, Connection]:
    """Two connected ends. Not duplex: the first only receives, the second only sends."""
    a, b = _xproc.pipe(duplex, _schema_id(schema))
    return Connection(a, schema), Connection(b, schema)


def _address_text(address: Address) -> str:
    """multiprocessing's address forms as the C++ library spells them."""
    if isinstance(address, tuple):
        host, port = address
        return f"tcp:{host}:{int(port)}"
    if isinstance(address, str):
        return address
    raise TypeError(f"address must be a (host, port) tuple or a str, not {type(address).__name__}")


def _address_value(text: str) -> Address:
    """The C++ library's address text in multiprocessing's form: TCP as (host, port); TLS
    ("tls:host:port") stays text, which multiprocessing has no form for."""
    if text.startswith("tls:"):
        return text
    body = text[4:] if text.startswith("tcp:") else text
    host, colon, port = body.rpartition(":")
    if colon and port.isdigit() and not body.startswith(("\0", "/", ".")):
        return (host.strip("[]"), int(port))
    return text


def _check_family(address: Optional[Address], family: Optional[str]) -> None:
    """ValueError for a family this platform does not have, as multiprocessing's: named
    pipes (an address starting with two backslashes, or ``AF_PIPE``) are Windows' alone."""
    if family is None and isinstance(address, str) and address.startswith("\\\\"):
        family = "AF_PIPE"
    if family not in (None, "AF_INET", "AF_UNIX"):
        raise ValueError(f"Family {family} is not recognized.")


def _check_authkey(authkey: Optional[bytes]) -> Optional[bytes]:
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
    return authkey


class Listener:
    """A listening socket, as ``multiprocessing.connection.Listener``.

    ``address`` is a ``(host, port)`` tuple (TCP), a filesystem path, or a str starting
    with ``'\\0'`` (a Linux abstract socket); None picks a fresh abstract address (or
    ``('localhost', 0)`` for ``family='AF_INET'``). With ``authkey``, every accepted
    connection must pass multiprocessing's HMAC challenge first; clients go through it
    side by side, so one that stays silent holds up nobody and is dropped after
    ``handshake_timeout`` seconds.
    """

    def __init__(
        self,
        address: Optional[Address] = None,
        family: Optional[str] = None,
        backlog: int = 1,
        authkey: Optional[bytes] = None,
        *,
        schema: Any = None,
        handshake_timeout: float = 5.0,
    ) -> None:
        _check_family(address, family)
        if address is None and family == "AF_INET":
            address = ("127.0.0.1", 0)
        self._schema = schema
        self._schema_id = _schema_id(schema)
        self._engine = _xproc.Listener("" if address is None else _address_text(address), backlog,
                                       _check_authkey(authkey), handshake_timeout)
        self.last_accepted: Optional[Any] = None

    def accept(self) -> Connection:
        """Waits for a client and returns the connection (after authentication)."""
        return Connection(self._engine.accept(self._schema_id), self._schema)

    @property
    def address(self) -> Address:
        """The address bound: a path, an abstract name or ``(host, port)`` with the real port."""
        return _address_value(self._engine.address)

    def fileno(self) -> int:
        """The listening socket's descriptor."""
        return self._engine.fileno()

    def close(self) -> None:
        """Stops listening; a socket file it created is removed."""
        self._engine.close()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def Client(
    address: Address, family: Optional[str] = None, authkey: Optional[bytes] = None, *, schema: Any = None
) -> Connection:
    """Connects to a Listener (xproc's or multiprocessing's) and answers its challenge."""
    _check_family(address, family)
    return Connection(_xproc.client(_address_text(address), _check_authkey(authkey), _schema_id(schema)), schema)


class _Waitable:
    """What multiprocessing's wait() selects on for an xproc Connection: its wait
    descriptor (Connection.fileno() would make every later receive pay for keeping that
    descriptor level-triggered)."""

    __slots__ = ("connection", "fd")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.fd = connection._engine.wait_fileno()

    def fileno(self) -> int:
        return self.fd


def wait(object_list: Iterable[Any], timeout: Optional[float] = None) -> List[Any]:
    """The objects of `object_list` that are ready to read, waiting up to `timeout`.

    Accepts xproc Connections beside anything multiprocessing's ``wait`` accepts
    (its Connections, sockets, objects with ``fileno()``)."""
    objects = list(object_list)
    ours = [o for o in objects if isinstance(o, Connection) and not o.closed]
    others = [o for o in objects if not (isinstance(o, Connection) and not o.closed)]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        # poll(0) sees what a descriptor cannot (a message in shared memory, or read ahead
        # into a buffer) and, finding nothing, asks the next send to wake the descriptor.
        ready = {id(o) for o in ours if o.poll(0)}
        if ready:
            if others:
                ready.update(id(o) for o in _mp_connection.wait(others, 0))
            return [o for o in objects if id(o) in ready]
        waitables = [_Waitable(o) for o in ours] + others
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        woken = _mp_connection.wait(waitables, remaining)
        # A connection woken for a message another reader took is not ready after all.
        ready = {id(w) for w in woken if not isinstance(w, _Waitable)}
        ready.update(id(w.connection) for w in woken if isinstance(w, _Waitable) and w.connection.poll(0))
        if ready or (deadline is not None and time.monotonic() >= deadline):
            return [o for o in objects if id(o) in ready]
