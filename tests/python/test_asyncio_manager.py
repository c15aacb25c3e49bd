"""A Manager's objects awaited from asyncio (``proxy.aio``): many calls in flight on one
connection, queues whose items are delivered exactly once to tasks cancelled at random,
locks and semaphores that a cancelled acquire does not leave held, events, conditions and
barriers shared with blocking processes, and errors as the blocking calls raise them.
Every test runs on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import random

import pytest
import uvloop

import xproc

LOOPS = ["asyncio", "uvloop"]


def run(loop_kind: str, coroutine):
    if loop_kind == "uvloop":
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def manager():
    with xproc.Manager() as m:
        yield m


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_dict_calls_many_in_flight_each_answered_by_its_own_reply(manager, loop_kind):
    d = manager.dict()

    async def main():
        await asyncio.gather(*(d.aio.set(f"k{i}", i) for i in range(500)))
        values = await asyncio.gather(*(d.aio.get(f"k{i}") for i in range(500)))
        assert values == list(range(500))
        counts = await asyncio.gather(*(d.aio.increment("n") for _ in range(200)))
        assert sorted(counts) == list(range(1, 201))
        assert await d.aio.getitem("n") == 200
        assert await d.aio.get_many(["k1", "absent"], default=-1) == [1, -1]
        assert await d.aio.compare_and_set("k1", 1, 10) == (True, 10)
        assert await d.aio.len() == 501
        assert await d.aio.pop("k2") == 2
        await d.aio.delete("k3")
        with pytest.raises(KeyError):
            await d.aio.getitem("k3")
        assert await d.aio.contains("k4")
        assert await d.aio.repr() == repr(d._remote)  # an operation reached by its name

    run(loop_kind, main())
    assert d["k1"] == 10 and d["n"] == 200  # what the blocking calls see


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_calls_of_one_turn_run_in_order_and_a_failure_stays_with_its_own_call(manager, loop_kind):
    d = manager.dict()
    lst = manager.list()

    async def main():
        # One turn's calls to each object leave in one batch, run in the order made (these
        # methods send at once; a coroutine method such as getitem sends when its task runs).
        results = await asyncio.gather(
            d.aio.set("a", 1), d.aio.get("a"), d.aio.get_item("missing"), d.aio.increment("a", 41),
            lst.aio.append("x"), lst.aio.get_item(5), lst.aio.len(), d.aio.len(),
            return_exceptions=True)
        assert results[0] is None and results[1] == 1 and results[3] == 42
        assert isinstance(results[2], KeyError)
        assert results[4] is None and isinstance(results[5], IndexError) and results[6] == 1
        assert results[7] == 1
        # A future cancelled before its turn ends settles nobody else's.
        doomed = d.aio.set("b", 2)
        kept = d.aio.get("a")
        doomed.cancel()
        assert await kept == 42

    run(loop_kind, main())


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_call_that_may_wait_does_not_overtake_earlier_calls_to_its_object(manager, loop_kind):
    lock = manager.Lock()

    async def main():
        assert await lock.aio.acquire()
        # release is batched, acquire (it may wait) goes alone, after the release.
        released, acquired = await asyncio.gather(lock.aio.release(), lock.aio.acquire(timeout=2))
        assert acquired is True
        await lock.aio.release()

    run(loop_kind, main())


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_lists_values_and_namespaces(manager, loop_kind):
    lst, value, ns = manager.list([1, 2, 3]), manager.Value("i", 5), manager.Namespace()

    async def main():
        await lst.aio.append(4)
        assert await lst.aio.getitem(slice(1, None)) == [2, 3, 4]
        await lst.aio.setitem(0, "a")
        assert await lst.aio.len() == 4
        assert await value.aio.increment(2) == 7
        await ns.aio.set("x", {"y": 1})
        assert await ns.aio.get("x") == {"y": 1}

    run(loop_kind, main())
    assert list(lst) == ["a", 2, 3, 4] and value.value == 7 and ns.x == {"y": 1}


def produce(q, count):
    for i in range(count):
        q.put(i)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_queue_items_reach_tasks_cancelled_at_random_exactly_once(manager, loop_kind):
    q = manager.Queue()
    count = 2000
    producer = mp.get_context("fork").Process(target=produce, args=(q, count))
    rng = random.Random(11)

    async def main():
        got = []
        producer.start()

        async def consume():
            while True:
                got.append(await q.aio.get())

        while len(got) < count:
            task = asyncio.ensure_future(consume())
            await asyncio.sleep(rng.uniform(0, 0.01))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            if not producer.is_alive() and await q.aio.empty():
                break
        return got

    got = run(loop_kind, main())
    producer.join(10)
    left = []
    while True:
        try:
            left.append(q.get_nowait())
        except queue.Empty:
            break
    assert sorted(got + left) == list(range(count))


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_bounded_queue_awaits_room_and_gets_time_out(manager, loop_kind):
    q = manager.Queue(1)

    async def main():
        await q.aio.put("first")
        with pytest.raises(queue.Full):
            await q.aio.put("second", timeout=0.05)
        blocked = asyncio.ensure_future(q.aio.put("second"))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        assert await q.aio.get() == "first"
        await blocked
        assert await q.aio.get() == "second"
        with pytest.raises(queue.Empty):
            await q.aio.get(timeout=0.05)
        with pytest.raises(queue.Empty):
            await q.aio.get_nowait()

    run(loop_kind, main())


def hold_then_release(lock, held, release):
    with lock:
        held.set()
        release.wait(10)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_cancelled_acquire_leaves_the_lock_free_for_others(manager, loop_kind):
    lock, held, release = manager.Lock(), manager.Event(), manager.Event()
    holder = mp.get_context("fork").Process(target=hold_then_release, args=(lock, held, release))
    holder.start()
    assert held.wait(10)

    async def main():
        waiting = asyncio.ensure_future(lock.aio.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        waiting.cancel()
        release.set()  # the holder lets go while the cancelled acquire may be taking it
        with pytest.raises(asyncio.CancelledError):
            await waiting
        async with lock.aio:
            assert await lock.aio.locked()
        assert not await lock.aio.locked()

    run(loop_kind, main())
    holder.join(10)
    assert lock.acquire(timeout=5)  # nobody holds it
    lock.release()


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_semaphores_events_and_barriers(manager, loop_kind):
    sem, event, barrier = manager.Semaphore(2), manager.Event(), manager.Barrier(2)

    async def main():
        assert await sem.aio.acquire() and await sem.aio.acquire()
        assert not await sem.aio.acquire(timeout=0.05)
        await sem.aio.release(2)
        assert await sem.aio.get_value() == 2
        waiter = asyncio.ensure_future(event.aio.wait())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        await event.aio.set()
        assert await waiter is True
        other = mp.get_context("fork").Process(target=barrier.wait, args=(10,))
        other.start()
        assert await barrier.aio.wait(10) in (0, 1)
        other.join(10)

    run(loop_kind, main())


def notify_soon(cond):
    import time

    time.sleep(0.05)
    with cond:
        cond.notify_all()


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_condition_waited_by_a_task_is_notified_by_a_process(manager, loop_kind):
    cond = manager.Condition()
    notifier = mp.get_context("fork").Process(target=notify_soon, args=(cond,))

    async def main():
        async with cond.aio:
            notifier.start()
            return await cond.aio.wait(10)

    assert run(loop_kind, main()) is True
    notifier.join(10)


def test_calls_to_a_manager_that_is_gone_raise_connection_error():
    m = xproc.Manager()
    d = m.dict()

    async def main():
        await d.aio.set("x", 1)
        m.shutdown()
        with pytest.raises(ConnectionError):
            await d.aio.get("x")

    asyncio.run(main())


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_bad_timeouts_are_refused_as_the_blocking_calls_refuse_them(manager, loop_kind):
    q, lock, sem = manager.Queue(), manager.Lock(), manager.Semaphore(0)

    async def main():
        for call in (lambda: q.aio.get(timeout=-1), lambda: q.aio.put(1, timeout=-1),
                     lambda: lock.aio.acquire(timeout=-2), lambda: lock.aio.acquire(False, 1),
                     lambda: sem.aio.acquire(False, 1)):
            with pytest.raises(ValueError):
                await call()
        assert await sem.aio.acquire(timeout=-1) is False  # a semaphore waits not at all, as threading's

    run(loop_kind, main())
    for call in (lambda: q.get(timeout=-1), lambda: lock.acquire(timeout=-2), lambda: lock.acquire(False, 1),
                 lambda: sem.acquire(False, 1)):
        with pytest.raises(ValueError):
            call()
