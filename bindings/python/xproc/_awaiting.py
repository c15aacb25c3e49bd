"""Awaiting queues from an asyncio event loop, without a thread.

A queue's waiters register doorbells in its shared memory (``_xproc.QueueWaiter``): a
descriptor that becomes readable when the change they wait for may have happened. Each
queue object keeps one doorbell per event loop and kind of change; any number of tasks
of that loop share it through one reader callback, and each task retries its
non-blocking operation when rung. A task never holds a message while it waits, so
cancelling one loses nothing: a message is either returned to it or stays queued.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Callable, Dict, Set, Tuple

from . import _xproc

MESSAGE, ROOM, JOIN = 0, 1, 2

# Rings may be spoiled by a process that writes the queue's memory at will: a waiter looks
# again at least this often whatever its doorbell says.
_RECHECK = _xproc.QueueWaiter.recheck_seconds


class _LoopDoorbell:
    """One doorbell of one queue, awaited by the tasks of one event loop."""

    def __init__(self, engine: Any, what: int) -> None:
        self._waiter = _xproc.QueueWaiter(engine, what)
        self._sleepers: Set[asyncio.Future[None]] = set()

    def arm(self) -> bool:
        return self._waiter.arm()

    async def sleep(self) -> None:
        """Until the doorbell rings or the recheck time passes."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._sleepers:
            loop.add_reader(self._waiter.fileno(), self._rung)
        self._sleepers.add(future)
        timer = loop.call_later(_RECHECK, _wake, future)
        try:
            await future
        finally:
            timer.cancel()
            self._sleepers.discard(future)
            if not self._sleepers:
                loop.remove_reader(self._waiter.fileno())

    def _rung(self) -> None:
        self._waiter.clear()
        for future in self._sleepers:
            _wake(future)


def _wake(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


# queue object -> (loop, what) -> doorbell. A doorbell holds one of the queue's 32 waiter
# slots: it goes with its queue object, and with its loop once that is closed (a program
# that calls asyncio.run() again and again must not fill the table).
_doorbells: "weakref.WeakKeyDictionary[Any, Dict[Tuple[asyncio.AbstractEventLoop, int], _LoopDoorbell]]" = (
    weakref.WeakKeyDictionary()
)


def _doorbell(owner: Any, engine: Any, what: int) -> _LoopDoorbell:
    loop = asyncio.get_running_loop()
    per_owner = _doorbells.setdefault(owner, {})
    for key in [key for key in per_owner if key[0].is_closed()]:
        del per_owner[key]
    bell = per_owner.get((loop, what))
    if bell is None:
        bell = per_owner[(loop, what)] = _LoopDoorbell(engine, what)
    return bell


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
