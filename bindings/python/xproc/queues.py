"""Queue, SimpleQueue and JoinableQueue: multiprocessing's queues over xproc's
shared-memory rings.

Differences from multiprocessing that a user can see, all deliberate:

* ``put`` serializes and copies the message into shared memory before it returns, so
  an unsupported object raises ``TypeError`` at the call, a message too large raises
  ``xproc.MessageTooLarge``, and a process may exit while its messages are still queued
  (there is no feeder thread, so ``join_thread``/``cancel_join_thread`` have nothing to do).
* Messages are Cap'n Proto: Python values (None, bool, int, float, str, bytes, list,
  tuple, dict, numpy arrays and other buffers) or, on a queue made with ``schema=``,
  pycapnp structs of that type. A C++ or Rust process reads them with the same schema.
* ``qsize()`` works everywhere; a process killed at any instant never wedges the queue.
"""

from __future__ import annotations

from multiprocessing import reduction
from typing import Any, Optional, Tuple

from . import _awaiting, _xproc
from ._xproc import register_schema

__all__ = ["Queue", "SimpleQueue", "JoinableQueue"]

_DEFAULT_CAPACITY = 1 << 30  # the most waiting messages may take; memory is taken by use
_KIND_QUEUE, _KIND_SIMPLE, _KIND_JOINABLE = 0, 1, 2
_VALUE_SCHEMA_ID = _xproc.Queue(capacity_bytes=4096).schema_id
# What get_if_any answers when the queue is empty (no item can be this object).
_NOTHING = object()


def _schema_id(schema: Any) -> int:
    if schema is None:
        return _VALUE_SCHEMA_ID
    try:
        node = schema.schema.node
    except AttributeError:
        raise TypeError(f"schema must be a pycapnp struct type (such as point_capnp.Point), not {schema!r}") from None
    if node.which != "struct":
        raise TypeError(f"schema must be a Cap'n Proto struct, not a {node.which}")
    register_schema(schema)
    return node.id


# Who may use a named queue besides its creator: (mode, owner, group), as xproc.Queue takes
# them. The default is its creator's user alone.
_Sharing = Tuple[int, Optional[int], Optional[int]]
_PRIVATE: _Sharing = (0o600, None, None)


def _open(name: str, sharing: _Sharing) -> "_xproc.Queue":
    mode, owner, group = sharing
    return _xproc.Queue.open(name, mode, owner, group)


def _open_or_create(name: str, make: Any, sharing: _Sharing) -> "_xproc.Queue":
    """The named queue, made by `make()` unless another process already made it. A file
    under the name that `sharing` does not accept raises PermissionError, never a takeover."""
    try:
        return _open(name, sharing)
    except ValueError:
        pass
    try:
        return make()
    except ValueError:
        return _open(name, sharing)  # another process created it between our two calls


class Queue:
    """A process-safe FIFO queue in shared memory, as ``multiprocessing.Queue``.

    ``Queue(maxsize=0, *, name=None, schema=None)``: with ``name`` the queue is the named
    shared-memory segment ``/dev/shm/xproc.<name>`` (opened if it exists, created
    otherwise) that any process and language can open; without it the queue is anonymous
    and reaches children through ``multiprocessing.Process`` (fork or spawn).
    ``capacity_bytes`` is the most the waiting messages may take (default 1 GiB); the
    largest message is half of it unless ``max_message_bytes`` says less. Memory is taken
    by use: an idle queue holds 256 KiB of shared memory, more while messages wait, and
    gives it back when it drains, so an unbounded queue's ``put`` does not wait for room
    (``MemoryError`` when memory or ``/dev/shm`` cannot hold the message).

    A named queue is its creator's user's alone unless shared on purpose: ``mode`` gives
    its permission bits (``0o660``: the group's too), ``group`` its group, and an opener
    accepts only a segment owned by ``owner`` (default: this user) with at most ``mode``'s
    bits. Anything else under the name raises ``PermissionError``.
    """

    _kind = _KIND_QUEUE

    def __init__(
        self,
        maxsize: int = 0,
        *,
        name: Optional[str] = None,
        schema: Any = None,
        capacity_bytes: int = _DEFAULT_CAPACITY,
        max_message_bytes: int = 0,
        mode: int = 0o600,
        owner: Optional[int] = None,
        group: Optional[int] = None,
    ) -> None:
        schema_id = _schema_id(schema)
        maxsize = max(0, maxsize)
        sharing = (mode, owner, group)

        def make(named: Optional[str] = None) -> "_xproc.Queue":
            return _xproc.Queue(maxsize, capacity_bytes, max_message_bytes, self._kind, schema_id, named, mode, group)

        engine = make() if name is None else _open_or_create(name, lambda: make(name), sharing)
        if engine.schema_id != schema_id:
            raise ValueError(
                f"queue {name!r} carries schema id {engine.schema_id:#018x}, not {schema_id:#018x}"
                + (" (xproc Values)" if schema_id == _VALUE_SCHEMA_ID else "")
            )
        self._attach(engine, schema, sharing)

    @classmethod
    def open(
        cls, name: str, *, schema: Any = None, mode: int = 0o600, owner: Optional[int] = None, group: Optional[int] = None
    ) -> "Queue":
        """Opens an existing named queue (``ValueError`` when there is none; ``PermissionError``
        when it is not owned and protected as ``mode``, ``owner`` and ``group`` accept)."""
        sharing = (mode, owner, group)
        engine = _open(name, sharing)
        if schema is not None and engine.schema_id != _schema_id(schema):
            raise ValueError(f"queue {name!r} carries schema id {engine.schema_id:#018x}, not {_schema_id(schema):#018x}")
        queue = cls.__new__(cls)
        queue._attach(engine, schema, sharing)
        return queue

    @staticmethod
    def remove(name: str) -> bool:
        """Unlinks the named queue (open handles keep working); False when there was none."""
        return _xproc.Queue.remove(name)

    def _attach(self, engine: "_xproc.Queue", schema: Any, sharing: _Sharing = _PRIVATE) -> None:
        self._engine = engine
        self._schema = schema
        self._sharing = sharing
        # The engine's methods, bound once: a put or get is one call into C++.
        self.put = engine.put
        self.get = engine.get
        self.put_bytes = engine.put_bytes
        self.get_bytes = engine.get_bytes
        self.get_view = engine.get_view
        self.qsize = engine.qsize
        self.empty = engine.empty
        self.full = engine.full

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:  # noqa: F811 (bound in _attach)
        """Copies `obj` into the queue; blocks while it is full (``queue.Full`` on timeout)."""
        self._engine.put(obj, block, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:  # noqa: F811
        """Removes and returns the oldest message (``queue.Empty`` on timeout)."""
        return self._engine.get(block, timeout)

    def put_nowait(self, obj: Any) -> None:
        """put(obj, block=False): ``queue.Full`` at once when there is no room."""
        self.put(obj, False)

    def get_nowait(self) -> Any:
        """get(block=False): ``queue.Empty`` at once when there is no message."""
        return self.get(False)

    def put_bytes(self, message: bytes, block: bool = True, timeout: Optional[float] = None) -> None:  # noqa: F811
        """Puts raw bytes, unchecked (for messages already serialized)."""
        self._engine.put_bytes(message, block, timeout)

    def get_bytes(self, block: bool = True, timeout: Optional[float] = None) -> bytes:  # noqa: F811
        """Removes the oldest message and returns its bytes, undecoded."""
        return self._engine.get_bytes(block, timeout)

    def get_view(self, block: bool = True, timeout: Optional[float] = None) -> "_xproc.MessageView":  # noqa: F811
        """Removes the oldest message but leaves its bytes in the queue's shared memory while
        they are read, for ``with q.get_view() as a:``. ``a`` is the message as ``get`` returns
        it, except that its arrays are read-only memoryviews of the queue's memory (no copy;
        ``numpy.asarray(a)`` makes no copy either). The block's end releases the memoryviews
        (using one afterwards raises ``ValueError``) and the message, or, while numpy arrays
        made from them live, the last of those does. Until then every other get of this queue,
        in any process, waits; in this thread one raises ``RuntimeError``, as it would wait for
        itself. ``queue.Empty`` on timeout."""
        return self._engine.get_view(block, timeout)

    def qsize(self) -> int:  # noqa: F811
        """The number of messages in the queue now (exact at that instant; other processes may
        change it at once)."""
        return self._engine.qsize()

    def empty(self) -> bool:  # noqa: F811
        """Whether the queue holds no message now."""
        return self._engine.empty()

    def full(self) -> bool:  # noqa: F811
        """Whether a bounded queue holds maxsize messages now (always False without maxsize: room
        then depends on the next message's size)."""
        return self._engine.full()

    def close(self) -> None:
        """This handle may no longer put or get (``ValueError``, as multiprocessing's); other
        handles, and this one's copies in other processes, are unaffected."""
        self._engine.close()

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise ValueError(f"Queue {self!r} is closed")

        self.put = self.get = self.put_bytes = self.get_bytes = self.get_view = refuse  # type: ignore[method-assign]

    # --- asyncio: the same operations, awaited without blocking the event loop ---

    async def aget(self) -> Any:
        """Removes and returns an item, awaiting one. A cancelled ``aget`` took nothing."""
        engine = self._engine

        def attempt() -> Tuple[bool, Any]:
            item = engine.get_if_any(_NOTHING)
            return item is not _NOTHING, item

        return await _awaiting.until_done(self, self._engine, _awaiting.MESSAGE, attempt)

    async def aput(self, obj: Any) -> None:
        """Puts ``obj``, awaiting room in a full bounded queue. A cancelled ``aput`` put nothing."""
        engine = self._engine

        def attempt() -> Tuple[bool, Any]:
            return engine.put_if_room(obj), None

        await _awaiting.until_done(self, self._engine, _awaiting.ROOM, attempt)

    def __aiter__(self) -> "Queue":
        return self

    async def __anext__(self) -> Any:
        return await self.aget()

    def join_thread(self) -> None:
        """Nothing to wait for: put() has copied every message before returning."""

    def cancel_join_thread(self) -> None:
        """Nothing to cancel (there is no feeder thread)."""

    @property
    def name(self) -> Optional[str]:
        """The segment name for a named queue, None for an anonymous one."""
        return self._engine.name or None

    @property
    def schema_id(self) -> int:
        """The Cap'n Proto type id of the queue's messages (xproc's Value for a queue of Python
        objects)."""
        return self._engine.schema_id

    @property
    def maxsize(self) -> int:
        """The most messages the queue holds at once; 0 when it is bounded by bytes only."""
        return self._engine.maxsize

    def __repr__(self) -> str:
        where = f"name={self.name!r}" if self.name else "anonymous"
        return f"<xproc.{type(self).__name__} {where} qsize={self.qsize()}>"

    # Pickling, for multiprocessing.Process arguments: a named queue travels as its name;
    # an anonymous one as a duplicate of its memory's descriptor, which only a process
    # being spawned can receive (as multiprocessing's own queues).
    def __reduce__(self) -> Any:
        if self.name:
            return (_reopen_named, (type(self), self.name, self._engine.schema_id, self._sharing))
        return (_reopen_anonymous, (type(self), reduction.DupFd(self._engine.anonymous_fd)))


def _rebuild(cls: type, engine: "_xproc.Queue", sharing: _Sharing = _PRIVATE) -> Queue:
    queue = cls.__new__(cls)
    queue._attach(engine, None, sharing)
    return queue


def _reopen_named(cls: type, name: str, schema_id: int, sharing: _Sharing = _PRIVATE) -> Queue:
    engine = _open(name, sharing)
    if engine.schema_id != schema_id:
        raise ValueError(f"queue {name!r} was replaced by one of another schema")
    return _rebuild(cls, engine, sharing)


def _reopen_anonymous(cls: type, duplicate: Any) -> Queue:
    return _rebuild(cls, _xproc.Queue.adopt(duplicate.detach()))


class SimpleQueue(Queue):
    """``multiprocessing.SimpleQueue``: an unbounded queue (``get``, ``put``, ``empty``, ``close``)."""

    _kind = _KIND_SIMPLE

    def __init__(
        self,
        *,
        name: Optional[str] = None,
        schema: Any = None,
        capacity_bytes: int = _DEFAULT_CAPACITY,
        mode: int = 0o600,
        owner: Optional[int] = None,
        group: Optional[int] = None,
    ) -> None:
        super().__init__(0, name=name, schema=schema, capacity_bytes=capacity_bytes, mode=mode, owner=owner, group=group)


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue``: consumers call ``task_done()`` per message and
    ``join()`` waits until every message put so far is done (across processes)."""

    _kind = _KIND_JOINABLE

    def task_done(self) -> None:
        """Marks one message as processed (``ValueError`` if called too many times)."""
        self._engine.task_done()

    async def ajoin(self) -> None:
        """Awaits every item put being marked done."""

        def attempt() -> Tuple[bool, Any]:
            try:
                self._engine.join(0.0)
                return True, None
            except TimeoutError:
                return False, None

        await _awaiting.until_done(self, self._engine, _awaiting.JOIN, attempt)

    def join(self, timeout: Optional[float] = None) -> None:
        """Blocks until every message put is done (``TimeoutError`` after `timeout`)."""
        self._engine.join(timeout)
