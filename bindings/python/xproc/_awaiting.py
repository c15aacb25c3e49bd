"""Awaiting queues and connections from an asyncio event loop, without a thread.

A queue's waiters register doorbells in its shared memory (``_xproc.QueueWaiter``): a
descriptor that becomes readable when the change they wait for may have happened. Each
queue object keeps one doorbell per event loop and kind of change; any number of tasks
of that loop share it through one reader callback, and each task retries its
non-blocking operation when rung. A task never holds a message while it waits, so
cancelling one loses nothing: a message is either returned to it or stays queued.

A connection is awaited the same way. A receiver looks with ``poll(0)``, which also asks
the next send to wake its ``wait_fileno()``, and sleeps on that descriptor. A sender
offers its message with ``send_if_room``; turned away with nothing sent, it sleeps on the
doorbell of the shared-memory ring it sends into (``room_waiter()``), or until its socket
is writable.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Callable, Dict, Optional, Set, Tuple

from . import _xproc

MESSAGE, ROOM, JOIN = 0, 1, 2  # what a queue's doorbell waits for
_RECEIVE, _SEND = 3, 4  # what a connection's watch waits for

# Rings may be spoiled by a process that writes the queue's memory at will: a waiter looks
# again at least this often whatever its doorbell says.
_RECHECK = _xproc.QueueWaiter.recheck_seconds


class _LoopWatch:
    """A descriptor awaited by the tasks of one event loop, through one reader (or writer)
    callback, with a look at least every _RECHECK seconds whatever it says."""

    def __init__(self, fd: int, writing: bool = False) -> None:
        self._fd = fd
        self._writing = writing
        self._sleepers: Set[asyncio.Future[None]] = set()
        self._watching: Optional[asyncio.AbstractEventLoop] = None

    def arm(self) -> bool:
        """After an attempt that would have blocked: whether to sleep (False: try again now)."""
        return True

    async def sleep(self) -> None:
        """Until the descriptor is ready or the recheck time passes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._watching is None and self._fd >= 0:
            (loop.add_writer if self._writing else loop.add_reader)(self._fd, self._ready)
            self._watching = loop
        self._sleepers.add(future)
        timer = loop.call_later(_RECHECK, _wake, future)
        try:
            await future
        finally:
            timer.cancel()
            self._sleepers.discard(future)
            if not self._sleepers:
                self._unwatch()

    def close(self) -> None:
        """Before the descriptor is closed: stops watching it and wakes every sleeper (each
        then finds its connection closed)."""
        self._unwatch()
        self._fd = -1
        for future in self._sleepers:
            _wake(future)

    def _unwatch(self) -> None:
        if self._watching is not None:
            loop, self._watching = self._watching, None
            if not loop.is_closed():
                (loop.remove_writer if self._writing else loop.remove_reader)(self._fd)

    def _ready(self) -> None:
        for future in self._sleepers:
            _wake(future)


class _LoopDoorbell(_LoopWatch):
    """One doorbell (a QueueWaiter) of one queue or ring, awaited by the tasks of one event loop."""

    def __init__(self, waiter: Any) -> None:
        super().__init__(waiter.fileno())
        self._waiter = waiter

    def arm(self) -> bool:
        """False when the queue changed since the doorbell last looked: then the tasks
        asleep on it are woken too, since the change may be theirs and the re-arming may
        have spoiled the ring meant for them."""
        if self._waiter.arm():
            return True
        for future in self._sleepers:
            _wake(future)
        return False

    def _ready(self) -> None:
        self._waiter.clear()
        super()._ready()


def _wake(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


# queue or connection object -> (loop, what) -> doorbell or watch. A doorbell holds one of the queue's 32 waiter
# slots: it goes with its queue object, and with its loop once that is closed (a program
# that calls asyncio.run() again and again must not fill the table).
_doorbells: "weakref.WeakKeyDictionary[Any, Dict[Tuple[asyncio.AbstractEventLoop, int], _LoopWatch]]" = (
    weakref.WeakKeyDictionary()
)


def _watch(owner: Any, what: int, make: Callable[[], _LoopWatch]) -> _LoopWatch:
    loop = asyncio.get_running_loop()
    per_owner = _doorbells.setdefault(owner, {})
    for key in [key for key in per_owner if key[0].is_closed()]:
        del per_owner[key]
    watch = per_owner.get((loop, what))
    if watch is None:
        watch = per_owner[(loop, what)] = make()
    return watch


def _doorbell(owner: Any, engine: Any, what: int) -> _LoopWatch:
    return _watch(owner, what, lambda: _LoopDoorbell(_xproc.QueueWaiter(engine, what)))


async def until_done(owner: Any, engine: Any, what: int, attempt: Callable[[], Tuple[bool, Any]]) -> Any:
    """Runs ``attempt`` (non-blocking: (done, result)) until done, sleeping on the queue's
    doorbell for ``what`` in between."""
    bell = None
    while True:
        done, result = attempt()
        if done:
            return result
        if bell is None:
            bell = _doorbell(owner, engine, what)
            continue  # registered after the attempt: look once more before arming
        if bell.arm():
            await bell.sleep()


# send_if_room's outcomes (ByteConnection::SendAttempt).
_SENT, _NO_ROOM, _BEGUN = 0, 1, 2

# Sends that were begun (part of a frame on a socket) and whose task was cancelled: they
# finish here, so that the peer never sees half a message.
_finishing: Set["asyncio.Task[None]"] = set()


async def receive(owner: Any, engine: Any, take: Callable[[], Any]) -> Any:
    """Runs ``take`` (a blocking receive) once ``engine.poll(0)`` says a message or EOF is
    there, sleeping on ``engine.wait_fileno()`` in between."""
    watch = None
    while True:
        if engine.poll(0):  # (and, finding nothing, asks the next send to wake the descriptor)
            return take()
        if watch is None:
            watch = _watch(owner, _RECEIVE, lambda: _LoopWatch(engine.wait_fileno()))
        await watch.sleep()


def _room(owner: Any, engine: Any) -> _LoopWatch:
    """What a sender of this loop sleeps on for room: the doorbell of a shared-memory end's
    ring, else its socket turning writable."""

    def make() -> _LoopWatch:
        waiter = engine.room_waiter()
        return _LoopWatch(engine.fileno(), writing=True) if waiter is None else _LoopDoorbell(waiter)

    return _watch(owner, _SEND, make)


async def send(owner: Any, engine: Any, attempt: Callable[[], int]) -> None:
    """Runs ``attempt`` (a send_if_room) until the message went; sleeps for room while it
    was turned away with nothing sent, and once begun finishes it even if cancelled."""
    room = None
    while True:
        outcome = attempt()
        if outcome == _SENT:
            return
        if outcome == _BEGUN:
            finishing = asyncio.ensure_future(_finish(owner, engine))
            _finishing.add(finishing)
            finishing.add_done_callback(_finished)
            await asyncio.shield(finishing)
            return
        if room is None:
            room = _room(owner, engine)
            continue  # registered after the attempt: look once more before arming
        if room.arm():
            await room.sleep()


async def _finish(owner: Any, engine: Any) -> None:
    room = _room(owner, engine)
    while not engine.try_finish_send():
        if room.arm():
            await room.sleep()


def _finished(task: "asyncio.Task[None]") -> None:
    _finishing.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the awaiting task, if any is left, has it raised


def forget(owner: Any) -> None:
    """Before ``owner``'s descriptors close: its watches stop, and their sleepers wake."""
    watches = _doorbells.pop(owner, None)
    if not watches:
        return
    for (loop, _), watch in watches.items():
        if loop.is_closed():
            continue
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop or not loop.is_running():
            watch.close()
        else:
            loop.call_soon_threadsafe(watch.close)
