"""The asyncio rows of `./dev.sh bench python`: xproc's Queue awaited from an event loop
(`aget`/`aput`) against the asyncio ways of the peers.

* Throughput: a producer process puts small dicts with blocking puts; the consumer is a
  coroutine awaiting each message. Peers: aioprocessing's AioQueue (`await coro_get()`: a
  `multiprocessing.Queue.get` in an executor thread per message) and a pyzmq PUSH socket
  feeding a `zmq.asyncio` PULL socket over `ipc://` (`send_pyobj`/`await recv_pyobj()`).
  The xproc consumer and the pyzmq one are measured again on uvloop.
* Ping-pong: two processes, each on an asyncio loop; one sends a small dict and awaits
  its echo. xproc over two Queues (`aput`/`aget`), pyzmq over one `zmq.asyncio` PAIR.
* Manager: one client keeps 16 dict gets in flight through the async proxies
  (`await asyncio.gather(*(d.aio.get(k) ...))`), against `multiprocessing.Manager`'s
  dict read by sequential blocking calls (it has no asynchronous client).

Every implementation is measured the same way: the queue or socket is made (and bound)
before the clock starts; the producer or echo process is `multiprocessing.Process` in
the default start method, started from inside the running loop; throughput is timed from
just before the producer starts to the consumer's receipt of the last message, which is
`None` after `count` dicts. Within each repetition the implementations take turns, so a
noisy neighbour hits them alike, and each figure is the median of its repetitions.

`python bench/python/asyncio_compare.py [--reps N] [--scale F]` prints these rows alone.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional

import aioprocessing
import uvloop
import zmq
import zmq.asyncio

import xproc
from python_compare import SMALL_DICT, medians, produce, row, run_rows_alone

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def run(coroutine: Awaitable[float], new_loop: LoopFactory = asyncio.new_event_loop) -> float:
    """`asyncio.run` on a loop of `new_loop`'s kind (the standard loop, or uvloop's)."""
    loop = new_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coroutine)
    finally:
        asyncio.set_event_loop(None)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --- Throughput: a producer process puts, a coroutine awaits each message -----------------
async def xproc_consumer(count: int) -> float:
    q = xproc.Queue()
    producer = mp.Process(target=produce, args=(q, SMALL_DICT, count))
    started = time.perf_counter()
    producer.start()
    received = 0
    while await q.aget() is not None:
        received += 1
    elapsed = time.perf_counter() - started
    producer.join()
    assert received == count
    return count / elapsed


async def aioprocessing_consumer(count: int) -> float:
    q = aioprocessing.AioQueue()
    producer = mp.Process(target=produce, args=(q, SMALL_DICT, count))
    started = time.perf_counter()
    producer.start()
    received = 0
    while await q.coro_get() is not None:
        received += 1
    elapsed = time.perf_counter() - started
    producer.join()
    q._executor.shutdown()  # its worker threads, made by the first coro_get
    assert received == count
    return count / elapsed


def zmq_produce(address: str, count: int, consumed: Any) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(address)
    for _ in range(count):
        push.send_pyobj(SMALL_DICT)
    push.send_pyobj(None)
    # Connected until the consumer has everything: closed (even with an infinite linger)
    # and gone before the consumer catches up, the socket lost the messages in flight.
    consumed.wait()
    push.close()
    context.term()


async def zmq_consumer(count: int) -> float:
    with tempfile.TemporaryDirectory(prefix="xproc-bench-") as directory:
        address = f"ipc://{directory}/pull"
        context = zmq.asyncio.Context()
        pull = context.socket(zmq.PULL)
        pull.bind(address)
        consumed = mp.Event()
        producer = mp.Process(target=zmq_produce, args=(address, count, consumed))
        started = time.perf_counter()
        producer.start()
        received = 0
        while await pull.recv_pyobj() is not None:
            received += 1
        elapsed = time.perf_counter() - started
        consumed.set()
        producer.join()
        pull.close()
        context.term()
    assert received == count
    return count / elapsed


# --- Ping-pong: the child echoes on its own loop; the parent times each round trip --------
WARM_UP_ROUNDS = 200


async def time_rounds(send: Callable[[Any], Awaitable[Any]], receive: Callable[[], Awaitable[Any]],
                      rounds: int) -> float:
    """The p50 round trip in µs after the warm-up; sends `None` last, which ends the echo."""
    for _ in range(WARM_UP_ROUNDS):
        await send(SMALL_DICT)
        await receive()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await send(SMALL_DICT)
        reply = await receive()
        samples.append(time.perf_counter() - started)
    assert reply == SMALL_DICT
    await send(None)
    assert await receive() is None
    return statistics.median(samples) * 1e6


def xproc_echo(requests: Any, replies: Any) -> None:
    async def echo() -> None:
        while True:
            message = await requests.aget()
            await replies.aput(message)
            if message is None:
                return

    asyncio.run(echo())


async def xproc_ping_pong_p50_us(rounds: int) -> float:
    requests, replies = xproc.Queue(), xproc.Queue()
    child = mp.Process(target=xproc_echo, args=(requests, replies))
    child.start()
    p50 = await time_rounds(requests.aput, replies.aget, rounds)
    child.join()
    return p50


def zmq_echo(address: str) -> None:
    async def echo() -> None:
        context = zmq.asyncio.Context()
        pair = context.socket(zmq.PAIR)
        pair.connect(address)
        while True:
            message = await pair.recv_pyobj()
            await pair.send_pyobj(message)
            if message is None:
                break
        pair.close(linger=-1)
        context.term()

    asyncio.run(echo())


async def zmq_ping_pong_p50_us(rounds: int) -> float:
    with tempfile.TemporaryDirectory(prefix="xproc-bench-") as directory:
        address = f"ipc://{directory}/pair"
        context = zmq.asyncio.Context()
        pair = context.socket(zmq.PAIR)
        pair.bind(address)
        child = mp.Process(target=zmq_echo, args=(address,))
        child.start()
        p50 = await time_rounds(pair.send_pyobj, pair.recv_pyobj, rounds)
        child.join()
        pair.close()
        context.term()
    return p50


# --- Manager: 16 calls in flight from one asyncio client ------------------------------------


async def xproc_async_gets(manager: Any, count: int, depth: int = 16) -> float:
    """Dict gets per second with `depth` in flight at a time, from one coroutine."""
    d = manager.dict({f"k{i}": i for i in range(100)})
    keys = [f"k{i % 100}" for i in range(depth)]
    await asyncio.gather(*(d.aio.get(k) for k in keys))  # connected, warm
    started = time.perf_counter()
    for _ in range(count // depth):
        await asyncio.gather(*(d.aio.get(k) for k in keys))
    return (count // depth) * depth / (time.perf_counter() - started)


def mp_sequential_gets(manager: Any, count: int) -> float:
    d = manager.dict({f"k{i}": i for i in range(100)})
    d.get("k1")
    started = time.perf_counter()
    for i in range(count):
        d.get(f"k{i % 100}")
    return count / (time.perf_counter() - started)


def asyncio_rows(reps: int, n: Callable[[int], int], report: Callable[[Dict[str, Any]], None]) -> None:
    """Measures the asyncio workloads and passes each row to `report`; `n` scales counts."""
    count = n(20000)
    ours, aioproc, pyzmq, ours_uv, pyzmq_uv = medians(reps, [
        lambda: run(xproc_consumer(count)),
        lambda: run(aioprocessing_consumer(count)),
        lambda: run(zmq_consumer(count)),
        lambda: run(xproc_consumer(count), uvloop.new_event_loop),
        lambda: run(zmq_consumer(count), uvloop.new_event_loop),
    ])
    workload = "asyncio consumer, small dicts from a producer process"
    report(row(workload, "messages/s", ours, "aioprocessing.AioQueue", aioproc, ">= 10", True, 10))
    report(row(workload, "messages/s", ours, "pyzmq zmq.asyncio PULL ipc", pyzmq, ">= 2", True, 2))
    report(row(workload + " (uvloop)", "messages/s", ours_uv, "pyzmq zmq.asyncio PULL uvloop", pyzmq_uv, "", True, 1))

    rounds = n(3000)
    ours, pyzmq = medians(reps, [lambda: run(xproc_ping_pong_p50_us(rounds)),
                                 lambda: run(zmq_ping_pong_p50_us(rounds))])
    report(row("asyncio ping-pong, small dict", "round trip p50 (us)", ours, "pyzmq zmq.asyncio PAIR ipc", pyzmq,
               "<= 0.5", False, 0.5))

    calls = n(20000)
    with xproc.Manager() as ours_manager, mp.Manager() as their_manager:
        ours, theirs = medians(reps, [lambda: run(xproc_async_gets(ours_manager, calls)),
                                      lambda: mp_sequential_gets(their_manager, calls)])
    report(row("Manager dict get, async proxies, 16 in flight", "calls/s", ours,
               "multiprocessing.Manager sequential", theirs, ">= 5", True, 5))


def main(argv: Optional[List[str]] = None) -> None:
    run_rows_alone(asyncio_rows, __doc__, argv)


if __name__ == "__main__":
    main()
