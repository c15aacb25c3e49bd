"""Manager calls awaited from an asyncio event loop, many in flight on one connection.

Each thread has its own kj event loop and, per manager, an event-loop connection beside
the one blocking calls use (``RemoteObject.call_async``). An asyncio loop drives it: it
watches that connection's socket and, when a reply may have come or after sending,
runs the kj loop without sleeping (``_xproc.pump_async_calls``) and settles the futures
of the calls that finished. Calls sent in one turn of the asyncio loop leave together,
pipelined.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Dict, Optional, Set, Tuple

from . import _xproc

# How often the kj loop is run while calls are in flight even if the socket says nothing:
# a request too large for the socket's buffer is written only as the loop runs.
_IDLE_PUMP = 0.05


class _LoopCalls:
    """The calls in flight of one asyncio loop (on its thread's connections)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._futures: Dict[int, asyncio.Future[Any]] = {}
        self._watched: Set[int] = set()
        self._pump_soon = False
        self._idle: Optional[asyncio.TimerHandle] = None

    def submit(self, remote: Any, method: str, args: Tuple[Any, ...]) -> "asyncio.Future[Any]":
        fd = remote.async_fileno()  # connects at the first call
        if fd not in self._watched:
            self._loop.add_reader(fd, self._pump)
            self._watched.add(fd)
        token = remote.call_async(method, args, {})
        future = self._loop.create_future()
        self._futures[token] = future
        future.add_done_callback(lambda f, token=token: self._settled_or_cancelled(token, f))
        if not self._pump_soon:
            self._pump_soon = True
            self._loop.call_soon(self._pump)  # sends this turn's calls together
        return future

    def _settled_or_cancelled(self, token: int, future: "asyncio.Future[Any]") -> None:
        if future.cancelled() and self._futures.pop(token, None) is not None:
            _xproc.cancel_async_call(token)

    def _pump(self) -> None:
        self._pump_soon = False
        for token in _xproc.pump_async_calls():
            future = self._futures.pop(token, None)
            if future is None:  # sent from a loop that is gone
                _xproc.cancel_async_call(token)
                continue
            try:
                result = _xproc.async_result(token)
            except ConnectionError as error:
                self._forget_sockets()
                future.set_exception(error)
            except Exception as error:  # the remote error, as a blocking call raises it
                future.set_exception(error)
            else:
                future.set_result(result)
        if self._futures and self._idle is None:
            self._idle = self._loop.call_later(_IDLE_PUMP, self._idle_pump)

    def _idle_pump(self) -> None:
        self._idle = None
        self._pump()

    def _forget_sockets(self) -> None:
        """After a connection dropped: its socket is closed (and its number may be reused)."""
        for fd in self._watched:
            self._loop.remove_reader(fd)
        self._watched.clear()


_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopCalls]" = weakref.WeakKeyDictionary()


def submit(remote: Any, method: str, *args: Any) -> "asyncio.Future[Any]":
    """Sends ``method`` of ``remote`` (its name in manager.capnp) now; a future of its result."""
    loop = asyncio.get_running_loop()
    calls = _by_loop.get(loop)
    if calls is None:
        calls = _by_loop[loop] = _LoopCalls(loop)
    return calls.submit(remote, method, args)


async def settle(future: "asyncio.Future[Any]") -> bool:
    """Awaits ``future`` to its end even when the awaiting task is cancelled meanwhile (for a
    call whose effect must not be lost: a message taken, a lock acquired). True when the
    task was cancelled; the caller then decides what the finished call means."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            break
    return cancelled


# Tasks given a result after they were cancelled, whose cancellation is still to come.
_cancel_pending: "weakref.WeakSet[asyncio.Task[Any]]" = weakref.WeakSet()


def cancel_again() -> None:
    """Delivers a result to a task that was cancelled while its call finished, keeping the
    cancellation for its next await (its cancel count unchanged)."""
    task = asyncio.current_task()
    if task is None:
        return
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()
    task.cancel()
    _cancel_pending.add(task)


async def cancellation_point() -> None:
    """Raises the cancellation cancel_again() kept, before a call that settle() would see
    through is sent: else a task cancelled once would go on taking items for ever."""
    task = asyncio.current_task()
    if task is not None and task in _cancel_pending:
        _cancel_pending.discard(task)
        await asyncio.sleep(0)
