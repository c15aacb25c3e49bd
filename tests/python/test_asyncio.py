"""Queues awaited from asyncio: producers in other processes, many tasks on one queue,
cancellation that loses nothing, bounded puts and joins, unrelated processes awaiting a
named queue, waiters killed while they await, and blocking and async consumers sharing a
queue. Every test runs on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
import uvloop

import xproc
from conftest import python_env

LOOPS = ["asyncio", "uvloop"]


def run(loop_kind: str, coroutine):
    if loop_kind == "uvloop":
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def produce(q, count, pause_every=0):
    import time

    for i in range(count):
        q.put({"i": i})
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(0.01)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_task_gets_every_item_from_a_producer_process_in_order(loop_kind):
    q = xproc.Queue()
    producer = mp.get_context("fork").Process(target=produce, args=(q, 3000, 500))
    producer.start()

    async def consume():
        return [(await q.aget())["i"] for _ in range(3000)]

    assert run(loop_kind, consume()) == list(range(3000))
    producer.join(10)
    assert producer.exitcode == 0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_thousand_tasks_awaiting_one_queue_each_get_one_item(loop_kind):
    q = xproc.Queue()

    async def main():
        tasks = [asyncio.ensure_future(q.aget()) for _ in range(1000)]
        await asyncio.sleep(0.05)  # all asleep on the queue's one doorbell
        producer = mp.get_context("fork").Process(target=produce, args=(q, 1000))
        producer.start()
        got = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        producer.join(10)
        return sorted(item["i"] for item in got)

    assert run(loop_kind, main()) == list(range(1000))


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_tasks_cancelled_at_random_lose_no_item(loop_kind):
    q = xproc.Queue()
    count = 5000
    producer = mp.get_context("fork").Process(target=produce, args=(q, count, 250))
    producer.start()

    async def main():
        got = []
        rng = random.Random(7)

        async def worker():
            while True:
                got.append((await q.aget())["i"])

        tasks = {asyncio.ensure_future(worker()) for _ in range(8)}
        while len(got) < count - 100:
            await asyncio.sleep(rng.random() * 0.003)
            victim = rng.choice(sorted(tasks, key=id))
            victim.cancel()
            tasks.discard(victim)
            tasks.add(asyncio.ensure_future(worker()))
        producer.join(10)
        await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return got

    got = run(loop_kind, main())
    while True:
        try:
            got.append(q.get_nowait()["i"])
        except Exception:
            break
    assert sorted(got) == list(range(count))  # each exactly once


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_aput_awaits_room_and_async_for_reads_in_order(loop_kind):
    q = xproc.Queue(2)

    def slow_consumer(q, out):
        import time

        for _ in range(10):
            time.sleep(0.01)
            out.put(q.get())

    out = xproc.Queue()
    consumer = mp.get_context("fork").Process(target=slow_consumer, args=(q, out))
    consumer.start()

    async def main():
        for i in range(10):
            await q.aput(i)  # waits for room 8 times
        got = []
        async for item in out:
            got.append(item)
            if len(got) == 10:
                break
        return got

    assert run(loop_kind, main()) == list(range(10))
    consumer.join(10)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_ajoin_returns_when_a_worker_process_marks_every_task_done(loop_kind):
    q = xproc.JoinableQueue()
    for i in range(20):
        q.put(i)

    def worker(q):
        import time

        for _ in range(20):
            q.get()
            time.sleep(0.002)
            q.task_done()

    p = mp.get_context("fork").Process(target=worker, args=(q,))
    p.start()
    run(loop_kind, asyncio.wait_for(q.ajoin(), 20))
    p.join(10)
    assert p.exitcode == 0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_an_unrelated_process_awaits_a_named_queue(unique_name, loop_kind):
    q = xproc.Queue(name=unique_name)
    script = textwrap.dedent(
        f"""
        import asyncio, sys, uvloop, xproc
        q = xproc.Queue.open({unique_name!r})
        async def main():
            print("ready", flush=True)
            return await asyncio.wait_for(q.aget(), 20)
        run = uvloop.run if {loop_kind!r} == "uvloop" else asyncio.run
        sys.exit(0 if run(main()) == "hello" else 1)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=python_env())
    assert child.stdout.readline().strip() == "ready"
    q.put("hello")
    assert child.wait(30) == 0


def test_a_program_that_runs_many_loops_on_one_queue_does_not_fill_its_waiter_table():
    q = xproc.Queue()

    async def wait_briefly():
        try:
            await asyncio.wait_for(q.aget(), 0.01)
        except asyncio.TimeoutError:
            pass

    for _ in range(3 * 32):  # the table holds 32 waiters
        asyncio.run(wait_briefly())
    q.put(1)
    assert asyncio.run(q.aget()) == 1


def await_forever(q, ready):
    async def main():
        task = asyncio.ensure_future(q.aget())
        await asyncio.sleep(0.05)  # armed on the queue's doorbell
        ready.put("armed")
        await task

    asyncio.run(main())


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_waiters_killed_while_they_await_cost_the_producer_and_other_waiters_nothing(loop_kind):
    q, ready = xproc.Queue(), xproc.Queue()
    # More than the queue's 32 waiter slots in all: a dead waiter's slot is reclaimed.
    for _ in range(40):
        waiter = mp.get_context("fork").Process(target=await_forever, args=(q, ready))
        waiter.start()
        assert ready.get(timeout=10) == "armed"
        os.kill(waiter.pid, signal.SIGKILL)
        waiter.join(10)
    producer = mp.get_context("fork").Process(target=produce, args=(q, 500, 100))

    async def consume():
        producer.start()
        return [(await q.aget())["i"] for _ in range(500)]

    assert run(loop_kind, consume()) == list(range(500))
    producer.join(10)
    assert producer.exitcode == 0


def take_until_none(q, taken):
    while True:
        item = q.get(timeout=30)
        taken.put(item)
        if item is None:
            return


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_blocking_and_async_consumers_share_a_queue_each_item_once(loop_kind):
    q, taken = xproc.Queue(), xproc.Queue()
    blocking = mp.get_context("fork").Process(target=take_until_none, args=(q, taken))
    blocking.start()

    def produce_then_stop():
        for i in range(3000):
            q.put(i)
        q.put(None)
        q.put(None)

    producer = mp.get_context("fork").Process(target=produce_then_stop)

    async def consume():
        producer.start()
        ours = []
        async for item in q:
            if item is None:
                return ours
            ours.append(item)

    ours = run(loop_kind, consume())
    producer.join(10)
    blocking.join(30)
    theirs = []
    while (item := taken.get(timeout=10)) is not None:
        theirs.append(item)
    assert sorted(ours + theirs) == list(range(3000))
