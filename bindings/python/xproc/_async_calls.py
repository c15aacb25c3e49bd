"""Manager calls awaited from an asyncio event loop, many in flight on one connection.

Each thread has its own kj event loop and, per manager, an event-loop connection beside
the one blocking calls use (``RemoteObject.call_async``). An asyncio loop drives it: it
watches that connection's socket and, when a reply may have come or after sending,
runs the kj loop without sleeping and settles the futures of the calls that finished
(``_xproc.settle_async_calls``, which sets results from C++). The calls to one object made
in one turn of the asyncio loop leave together, in one batch (a call that may wait, one
with a timeout, goes on its own).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Callable, Dict, Optional, Set

from . import _xproc

# How often the kj loop is run while calls are in flight even if the socket says nothing:
# a request too large for the socket's buffer is written only as the loop runs.
_IDLE_PUMP = 0.05


class _LoopCalls:
    """The calls in flight of one asyncio loop (on its thread's connections)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watched: Set[int] = set()
        self._pump_soon = False
        self._idle: Optional[asyncio.TimerHandle] = None

    def watch(self, fd: int) -> None:
        """Pumps when the connection on `fd` is readable (no reply is read before this turn
        ends, so watching after the first call is sent is in time)."""
        self._loop.add_reader(fd, self._pump)
        self._watched.add(fd)

    def pump_soon(self) -> None:
        """Pumps at the end of this turn: sends this turn's calls together."""
        self._pump_soon = True
        self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_soon = False
        failures, in_flight = _xproc.settle_async_calls(self._loop)
        for future, token in failures:
            try:
                _xproc.async_result(token)
            except ConnectionError as error:
                self._forget_sockets()
                future.set_exception(error)
            except Exception as error:  # the remote error, as a blocking call raises it
                future.set_exception(error)
        if in_flight and self._idle is None:
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


def _no_loop() -> None:
    return None


# The loop of the last call and its calls, held weakly: most calls come from the loop of the
# one before, and a weak dictionary's lookup runs Python code.
_last_loop: Callable[[], Any] = _no_loop
_last_calls: Callable[[], Optional[_LoopCalls]] = _no_loop


def submit(remote: Any, method: str, *args: Any) -> "asyncio.Future[Any]":
    """Sends ``method`` of ``remote`` (its name in manager.capnp) now; a future of its result.
    (Every asynchronous Manager call comes through here: it is kept flat.)"""
    global _last_loop, _last_calls
    loop = asyncio.get_running_loop()
    calls = _last_calls() if _last_loop() is loop else None
    if calls is None:
        calls = _by_loop.get(loop)
        if calls is None:
            calls = _by_loop[loop] = _LoopCalls(loop)
        _last_loop, _last_calls = weakref.ref(loop), weakref.ref(calls)
    future = loop.create_future()
    token, batched, fd = remote.call_async(method, args, _NO_KEYWORDS, loop, future)  # connects at the first call
    if fd not in calls._watched:
        calls.watch(fd)
    if not batched:
        # A call that may wait is cancelled on the server with its future.
        future.add_done_callback(lambda f, token=token: f.cancelled() and _xproc.cancel_async_call(token))
    if not calls._pump_soon:
        calls.pump_soon()
    return future


_NO_KEYWORDS: Dict[str, Any] = {}


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
