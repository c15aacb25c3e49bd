"""A Manager's shared objects awaited from asyncio: ``proxy.aio``.

Every proxy has an ``aio`` face whose methods return awaitables (a future of the call,
or a coroutine where the result needs more work), sent on the thread's event-loop
connection to the manager as soon as they are made, so that any number of calls are in
flight at once (pipelined on one connection)::

    d = manager.dict()
    await d.aio.set("x", 1)
    values = await asyncio.gather(*(d.aio.get(k) for k in keys))   # all in flight at once
    async with lock.aio:
        ...
    item = await queue.aio.get()

Cancellation leaves every object consistent and loses nothing:

- A call with no lasting effect to undo (a read, an Event's wait, a join) is simply
  dropped: the server cancels it if it has not answered.
- A queue's get and put, and a lock's or a semaphore's acquire, wait on the server in
  slices of at most ``SLICE`` seconds and are never cancelled mid-slice: a task cancelled
  meanwhile waits for the slice to end. If it took an item (or put one), the item is
  returned to it and the cancellation is delivered at its next await; if it acquired a
  lock or semaphore, that is released and CancelledError raised; if nothing happened,
  CancelledError is raised. So an item is either delivered to the task or stays queued.
- A Condition's and a Barrier's wait change shared state as they wait (the lock is given
  up and taken back; a party is counted), so a cancelled wait is seen through to its end
  before CancelledError is raised — with the lock held again, as asyncio.Condition does.

The event-loop connection is a session of its own: a lock acquired through ``aio`` is
released through ``aio`` (``async with lock.aio`` does both), and an RLock is re-entrant
for every task of the thread.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ._async_calls import cancel_again, cancellation_point, settle, submit
from .managers import MISSING, _acquire_timeout, _schema_name, _wait_timeout

# The longest wait a get, put or acquire leaves on the server at once: how long a cancelled
# task may wait before its cancellation takes effect.
SLICE = 0.1


def _slices(timeout: Optional[float]) -> Iterable[float]:
    """The server-side waits that make up one of ``timeout`` seconds (None: forever)."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        left = SLICE if deadline is None else min(SLICE, max(0.0, deadline - time.monotonic()))
        yield left
        if deadline is not None and time.monotonic() >= deadline:
            return


class AsyncProxy:
    """The coroutine face of a proxy. A method this class does not spell out is reachable
    by its Python name, as on the proxy: ``await d.aio.get_many(keys)`` sends ``getMany``."""

    def __init__(self, proxy: Any) -> None:
        self._proxy = proxy
        self._remote = proxy._remote
        # Sends a method now; the future of its result (awaitable, cancellable). A partial,
        # not a method: one Python frame less on every call.
        self._call = functools.partial(submit, self._remote)

    def __repr__(self) -> str:
        return f"<async face of {self._proxy!r}>"

    async def _call_to_end(self, method: str, *args: Any) -> Tuple[bool, Any]:
        """Sends a call that is not cancelled once sent; (whether the task was cancelled
        meanwhile, the call's future)."""
        await cancellation_point()
        future = submit(self._remote, method, *args)
        return await settle(future), future

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = _schema_name(name)
        if not self._remote.has_method(method):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

        def call(*args: Any) -> "asyncio.Future[Any]":
            return submit(self._remote, method, *args)

        return call


class AsyncDictProxy(AsyncProxy):
    """A dict proxy's ``aio``: the dict's operations as awaitables."""

    async def getitem(self, key: Any) -> Any:
        """``d[key]``; KeyError when absent."""
        try:
            return await self._call("getItem", key)
        except KeyError:
            raise KeyError(key) from None

    def set(self, key: Any, value: Any) -> "asyncio.Future[None]":
        """``d[key] = value``."""
        return self._call("setItem", key, value)

    async def delete(self, key: Any) -> None:
        """``del d[key]``; KeyError when absent."""
        try:
            await self._call("delItem", key)
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: Any, default: Any = None) -> "asyncio.Future[Any]":
        """``d.get(key, default)``."""
        return self._call("get", key, default)

    def contains(self, key: Any) -> "asyncio.Future[bool]":
        """``key in d``."""
        return self._call("contains", key)

    def len(self) -> "asyncio.Future[int]":
        """``len(d)``."""
        return self._call("len")

    def keys(self) -> "asyncio.Future[List[Any]]":
        """The keys, as a list."""
        return self._call("keys")

    def values(self) -> "asyncio.Future[List[Any]]":
        """The values, as a list."""
        return self._call("values")

    def items(self) -> "asyncio.Future[List[Tuple[Any, Any]]]":
        """The (key, value) pairs, as a list."""
        return self._call("items")

    async def pop(self, key: Any, default: Any = MISSING) -> Any:
        """``d.pop(key[, default])``; KeyError when absent and no default is given."""
        if default is MISSING:
            try:
                return await self._call("pop", key)
            except KeyError:
                raise KeyError(key) from None
        return await self._call("pop", key, default)

    def setdefault(self, key: Any, default: Any = None) -> "asyncio.Future[Any]":
        """``d.setdefault(key, default)``."""
        return self._call("setdefault", key, default)

    async def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """``d.update(other, **kwargs)``, in one call."""
        await self._call("update", dict(other, **kwargs))

    def clear(self) -> "asyncio.Future[None]":
        """``d.clear()``."""
        return self._call("clear")

    def copy(self) -> "asyncio.Future[Dict[Any, Any]]":
        """A snapshot as a plain dict."""
        return self._call("copy")

    def increment(self, key: Any, delta: Any = 1) -> "asyncio.Future[Any]":
        """``d[key] = d.get(key, 0) + delta`` atomically; the new value."""
        return self._call("increment", key, delta)

    async def compare_and_set(self, key: Any, expected: Any, value: Any) -> Tuple[bool, Any]:
        """As DictProxy.compare_and_set."""
        missing = expected is MISSING
        swapped, current, present = await self._call(
            "compareAndSet", key, None if missing else expected, missing, value
        )
        return swapped, current if present else MISSING

    async def get_many(self, keys: Iterable[Any], default: Any = None) -> List[Any]:
        """As DictProxy.get_many: many values in one call."""
        values, present = await self._call("getMany", list(keys))
        return [value if found else default for value, found in zip(values, present)]

    def set_many(self, items: Any) -> "asyncio.Future[None]":
        """As DictProxy.set_many: many keys set in one call, atomically."""
        return self._call("setMany", dict(items))


class AsyncSequenceProxy(AsyncProxy):
    """A list's or an array's: indexing and slicing as coroutines."""

    async def getitem(self, index: Any) -> Any:
        """``s[index]`` or ``s[start:stop:step]``; IndexError out of range."""
        if isinstance(index, slice):
            return await self._call("getSlice", index)
        return await self._call("getItem", index)

    async def setitem(self, index: Any, value: Any) -> None:
        """``s[index] = value`` or ``s[start:stop:step] = values``."""
        if isinstance(index, slice):
            await self._call("setSlice", index, list(value))
        else:
            await self._call("setItem", index, value)

    def len(self) -> "asyncio.Future[int]":
        """``len(s)``."""
        return self._call("len")


class AsyncNamespaceProxy(AsyncProxy):
    """A namespace proxy's ``aio``: attributes by name."""

    def get(self, name: str) -> "asyncio.Future[Any]":
        """``ns.name``; AttributeError when absent."""
        return self._call("getAttr", name)

    def set(self, name: str, value: Any) -> "asyncio.Future[None]":
        """``ns.name = value``."""
        return self._call("setAttr", name, value)

    def delete(self, name: str) -> "asyncio.Future[None]":
        """``del ns.name``; AttributeError when absent."""
        return self._call("delAttr", name)


class AsyncValueProxy(AsyncProxy):
    """A Value proxy's ``aio``."""

    def get(self) -> "asyncio.Future[Any]":
        """The value."""
        return self._call("get")

    def set(self, value: Any) -> "asyncio.Future[None]":
        """Replaces the value."""
        return self._call("set", value)

    def increment(self, delta: Any = 1) -> "asyncio.Future[Any]":
        """``value += delta`` atomically; the new value."""
        return self._call("increment", delta)


class AsyncQueueProxy(AsyncProxy):
    """A queue proxy's ``aio``: get and put await items and room; ``async for item in q.aio`` gets
    items for ever."""

    async def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Removes and returns an item, awaiting one (queue.Empty after ``timeout``).
        An item taken is always delivered (see the module's note on cancellation)."""
        import queue  # at the call: a program may be called queue.py

        return await self._in_slices("get", (), block, timeout, queue.Empty)

    async def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts ``obj``, awaiting room in a full bounded queue (queue.Full after ``timeout``)."""
        import queue

        await self._in_slices("put", (obj,), block, timeout, queue.Full)

    async def _in_slices(self, method: str, args: Tuple[Any, ...], block: bool, timeout: Optional[float],
                         missed: type) -> Any:
        """``method(*args, block, slice)`` until it does not raise ``missed`` or ``timeout``
        runs out (``missed`` raised then), each call seen through if the task is cancelled."""
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        for wait in _slices(timeout if block else 0.0):
            cancelled, future = await self._call_to_end(method, *args, block, wait if block else None)
            error = future.exception()
            if error is None:
                if cancelled:
                    cancel_again()
                return future.result()
            if cancelled:
                raise asyncio.CancelledError()
            if not isinstance(error, missed):
                raise error
        raise missed

    async def get_nowait(self) -> Any:
        """get(block=False): queue.Empty when no item is there."""
        return await self.get(False)

    async def put_nowait(self, obj: Any) -> None:
        """put(obj, block=False): queue.Full when there is no room."""
        await self.put(obj, False)

    def qsize(self) -> "asyncio.Future[int]":
        """The number of items in the queue now."""
        return self._call("qsize")

    def empty(self) -> "asyncio.Future[bool]":
        """Whether the queue holds no item now."""
        return self._call("empty")

    def full(self) -> "asyncio.Future[bool]":
        """Whether a bounded queue has no room now."""
        return self._call("full")

    def __aiter__(self) -> "AsyncQueueProxy":
        return self

    async def __anext__(self) -> Any:
        return await self.get()


class AsyncJoinableQueueProxy(AsyncQueueProxy):
    """A JoinableQueue proxy's ``aio``."""

    def task_done(self) -> "asyncio.Future[None]":
        """Marks one item got as processed; ValueError when called too often."""
        return self._call("taskDone")

    def join(self, timeout: Optional[float] = None) -> "asyncio.Future[bool]":
        """Awaits every item put being marked done; False after ``timeout``."""
        return self._call("join", _wait_timeout(timeout))


class _AsyncAcquirer(AsyncProxy):
    """Lock, RLock and Semaphore: acquire in slices; a cancelled acquire holds nothing."""

    async def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """As the blocking proxy's acquire; a task cancelled while it waits holds nothing
        afterwards."""
        wait_for = self._timeout(blocking, timeout)
        for wait in _slices(wait_for if blocking else 0.0):
            cancelled, future = await self._call_to_end("acquire", blocking, wait if blocking else None)
            acquired = future.result()
            if cancelled:
                if acquired:
                    self._call("release")  # sent now; settled by the loop, awaited by nobody
                raise asyncio.CancelledError()
            if acquired or not blocking:
                return acquired
        return False

    @staticmethod
    def _timeout(blocking: bool, timeout: Optional[float]) -> Optional[float]:
        """The wait in seconds (None: forever) by the blocking proxy's rules; ValueError as it."""
        return _acquire_timeout(blocking, timeout)

    def release(self) -> "asyncio.Future[None]":
        """Releases what ``aio`` acquired."""
        return self._call("release")

    async def __aenter__(self) -> bool:
        return await self.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        await self.release()


class AsyncLockProxy(_AsyncAcquirer):
    """A Lock's or RLock's ``aio``: ``async with lock.aio:``."""

    def locked(self) -> "asyncio.Future[bool]":
        """Whether some client holds the lock now."""
        return self._call("locked")


class AsyncSemaphoreProxy(_AsyncAcquirer):
    """A Semaphore's or BoundedSemaphore's ``aio``: ``async with sem.aio:``."""

    @staticmethod
    def _timeout(blocking: bool, timeout: Optional[float]) -> Optional[float]:
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        return _wait_timeout(timeout)

    def release(self, n: int = 1) -> "asyncio.Future[None]":  # type: ignore[override]
        """Gives back `n` units."""
        return self._call("release", n)

    def get_value(self) -> "asyncio.Future[int]":
        """The units free now."""
        return self._call("value")


class AsyncEventProxy(AsyncProxy):
    """An Event's ``aio``."""

    def is_set(self) -> "asyncio.Future[bool]":
        """Whether the flag is set."""
        return self._call("isSet")

    def set(self) -> "asyncio.Future[None]":
        """Sets the flag and wakes every waiter."""
        return self._call("set")

    def clear(self) -> "asyncio.Future[None]":
        """Clears the flag."""
        return self._call("clear")

    def wait(self, timeout: Optional[float] = None) -> "asyncio.Future[bool]":
        """Awaits the flag, up to `timeout` seconds (None: no limit); the flag at the end."""
        return self._call("wait", _wait_timeout(timeout))


class AsyncConditionProxy(_AsyncAcquirer):
    """A Condition's ``aio``: ``async with cond.aio:`` then ``await cond.aio.wait()``."""

    async def wait(self, timeout: Optional[float] = None) -> bool:
        """As Condition.wait (the lock held through ``aio``); a cancelled wait is seen
        through to its end, the lock held again, before CancelledError."""
        cancelled, future = await self._call_to_end("wait", _wait_timeout(timeout))
        if cancelled:
            raise asyncio.CancelledError()
        return future.result()

    def notify(self, n: int = 1) -> "asyncio.Future[None]":
        """Wakes up to `n` waiters."""
        return self._call("notify", n)

    def notify_all(self) -> "asyncio.Future[None]":
        """Wakes every waiter."""
        return self._call("notifyAll")


class AsyncBarrierProxy(AsyncProxy):
    """A Barrier's ``aio``."""

    async def wait(self, timeout: Optional[float] = None) -> int:
        """As Barrier.wait; a cancelled wait is seen through to its end first."""
        cancelled, future = await self._call_to_end("wait", _wait_timeout(timeout))
        if cancelled:
            raise asyncio.CancelledError()
        return future.result()

    def reset(self) -> "asyncio.Future[None]":
        """Returns the barrier to its empty state; waiters get BrokenBarrierError."""
        return self._call("reset")

    def abort(self) -> "asyncio.Future[None]":
        """Breaks the barrier: present and future waiters get BrokenBarrierError."""
        return self._call("abort")


# The async face of each kind of proxy (by the remote object's kind).
ASYNC_FACES = {
    "dict": AsyncDictProxy,
    "list": AsyncSequenceProxy,
    "array": AsyncSequenceProxy,
    "namespace": AsyncNamespaceProxy,
    "value": AsyncValueProxy,
    "queue": AsyncQueueProxy,
    "joinable_queue": AsyncJoinableQueueProxy,
    "lock": AsyncLockProxy,
    "rlock": AsyncLockProxy,
    "semaphore": AsyncSemaphoreProxy,
    "bounded_semaphore": AsyncSemaphoreProxy,
    "event": AsyncEventProxy,
    "condition": AsyncConditionProxy,
    "barrier": AsyncBarrierProxy,
}



def face_of(proxy: Any) -> AsyncProxy:
    """The async face of ``proxy`` (its ``aio``)."""
    return ASYNC_FACES.get(proxy._remote.kind, AsyncProxy)(proxy)
