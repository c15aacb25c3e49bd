"""Connections awaited from asyncio: a peer process streaming to a task, ping-pong between
two processes, many tasks on one connection, cancellation that loses or splits no
message, EOF and closed ends, messages of several MiB, and socket connections from a
Listener and Client. Every test runs on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing as mp
import random
import threading

import pytest
import uvloop

import xproc
from xproc.connection import Client, Listener, Pipe

LOOPS = ["asyncio", "uvloop"]
fork = mp.get_context("fork")


def run(loop_kind: str, coroutine):
    if loop_kind == "uvloop":
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def socket_pair(family=None):
    """Two ends of a Listener/Client connection (sockets, CPython's framing)."""
    with Listener(family=family) as listener:
        client = []
        connecting = threading.Thread(target=lambda: client.append(Client(listener.address)))
        connecting.start()
        served = listener.accept()
        connecting.join()
    return served, client[0]


# A shared-memory Pipe, a Unix socket and TCP (whose sends a full buffer can split).
PAIRS = {"pipe": Pipe, "socket": socket_pair, "tcp": lambda: socket_pair("AF_INET")}


def stream(conn, count, pause_every=0):
    import time

    for i in range(count):
        conn.send({"i": i})
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(0.01)
    conn.close()


def echo_async(conn, loop_kind, rounds):
    """A process that answers each message with the message plus one, awaiting both ways."""

    async def main():
        for _ in range(rounds):
            await conn.asend(await conn.arecv() + 1)

    run(loop_kind, main())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send_large(conn, sizes):
    for n, size in enumerate(sizes):
        conn.send_bytes(bytes([n % 251]) * size)
    conn.close()


def receive_large(conn, count):
    for _ in range(count):
        data = conn.recv_bytes()
        conn.send((len(data), digest(data)))
    conn.close()


def collect(conn, results, other_end):
    """Receives until EOF and reports every message received, in order."""
    other_end.close()  # this process's copy of the sending end, which would hold EOF off
    import time

    got = []
    try:
        while True:
            got.append(conn.recv())
            if len(got) % 100 == 0:
                time.sleep(0.002)  # slower than the sender: its socket or ring fills
    except EOFError:
        pass
    results.send(got)


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_task_receives_a_peer_process_stream_in_order(loop_kind, kind):
    reader, writer = PAIRS[kind]()
    producer = fork.Process(target=stream, args=(writer, 3000, 500))
    producer.start()
    writer.close()

    async def consume():
        return [(await reader.arecv())["i"] for _ in range(3000)]

    assert run(loop_kind, consume()) == list(range(3000))
    producer.join(10)
    assert producer.exitcode == 0


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_ping_pong_between_two_processes_that_await_both_ways(loop_kind, kind):
    here, there = PAIRS[kind]()
    rounds = 2000
    peer = fork.Process(target=echo_async, args=(there, loop_kind, rounds))
    peer.start()
    there.close()

    async def main():
        value = 0
        for _ in range(rounds):
            await here.asend(value)
            value = await here.arecv()
        return value

    assert run(loop_kind, main()) == rounds
    peer.join(10)
    assert peer.exitcode == 0


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_many_tasks_awaiting_one_connection_each_get_one_message(loop_kind):
    reader, writer = Pipe()

    async def main():
        tasks = [asyncio.ensure_future(reader.arecv()) for _ in range(500)]
        await asyncio.sleep(0.05)  # all asleep on the connection
        producer = fork.Process(target=stream, args=(writer, 500))
        producer.start()
        got = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        producer.join(10)
        return sorted(item["i"] for item in got)

    assert run(loop_kind, main()) == list(range(500))


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_receivers_cancelled_at_random_lose_no_message(loop_kind, kind):
    reader, writer = PAIRS[kind]()
    count = 5000
    producer = fork.Process(target=stream, args=(writer, count, 250))
    producer.start()
    writer.close()

    async def main():
        got = []
        rng = random.Random(7)

        async def worker():
            while True:
                got.append((await reader.arecv())["i"])

        workers = [asyncio.ensure_future(worker()) for _ in range(8)]
        while len(got) < count * 3 // 4:
            await asyncio.sleep(rng.random() * 0.002)
            victim = rng.randrange(len(workers))
            workers[victim].cancel()
            workers[victim] = asyncio.ensure_future(worker())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        return got

    got = run(loop_kind, main())
    try:  # what is left in the connection (the producer may be waiting for room to send it)
        while True:
            got.append(reader.recv()["i"])
    except EOFError:
        pass
    producer.join(10)
    assert producer.exitcode == 0
    assert sorted(got) == list(range(count))


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_senders_cancelled_at_random_send_each_message_whole_or_not_at_all(loop_kind, kind):
    here, there = PAIRS[kind]()
    results_in, results_out = Pipe(duplex=False)
    receiver = fork.Process(target=collect, args=(there, results_out, here))
    receiver.start()
    there.close()
    padding = "x" * 3000  # frames that a full socket takes part of

    async def main():
        rng = random.Random(11)
        completed, attempted = set(), 0

        async def sender(i):
            await here.asend({"i": i, "pad": padding})
            completed.add(i)

        while attempted < 4000:
            batch = [asyncio.ensure_future(sender(attempted + k)) for k in range(20)]
            attempted += len(batch)
            await asyncio.sleep(0)
            for task in batch:
                if rng.random() < 0.3:
                    task.cancel()
            await asyncio.gather(*batch, return_exceptions=True)
        return completed, attempted

    completed, attempted = run(loop_kind, main())
    here.close()
    got = results_in.recv()
    receiver.join(10)
    numbers = [item["i"] for item in got]
    assert all(item["pad"] == padding for item in got)  # none split or mixed with another
    assert len(numbers) == len(set(numbers))
    assert completed <= set(numbers) <= set(range(attempted))


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_eof_once_the_peer_closed_and_oserror_on_a_closed_end(loop_kind, kind):
    reader, writer = PAIRS[kind]()
    producer = fork.Process(target=stream, args=(writer, 3))
    producer.start()
    writer.close()

    async def main():
        got = [(await reader.arecv())["i"] for _ in range(3)]
        waiting = [asyncio.ensure_future(reader.arecv()) for _ in range(3)]
        outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 30)
        with pytest.raises(EOFError):
            await reader.arecv_bytes()
        return got, outcomes

    got, outcomes = run(loop_kind, main())
    producer.join(10)
    assert got == [0, 1, 2]
    assert all(isinstance(outcome, EOFError) for outcome in outcomes)

    reader.close()

    async def on_closed():
        for operation in (reader.arecv(), reader.arecv_bytes(), reader.asend(1), reader.asend_bytes(b"x")):
            with pytest.raises(OSError):
                await operation

    run(loop_kind, on_closed())


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_closing_an_end_wakes_its_waiting_tasks_with_oserror(loop_kind, kind):
    here, there = PAIRS[kind]()

    async def main():
        waiting = [asyncio.ensure_future(here.arecv()) for _ in range(3)]
        await asyncio.sleep(0.05)
        here.close()
        return await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 30)

    outcomes = run(loop_kind, main())
    assert all(isinstance(outcome, OSError) and not isinstance(outcome, EOFError) for outcome in outcomes)
    there.close()


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_messages_of_several_mib_both_ways(loop_kind, kind):
    sizes = [3 << 20, 5 << 20, 1, 0, 70 << 10, 4 << 20]
    incoming, their_out = PAIRS[kind]()
    outgoing, their_in = PAIRS[kind]()
    sender = fork.Process(target=send_large, args=(their_out, sizes))
    receiver = fork.Process(target=receive_large, args=(their_in, len(sizes)))
    sender.start()
    receiver.start()
    their_out.close()
    their_in.close()

    async def main():
        received = [await incoming.arecv_bytes() for _ in sizes]
        payloads = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
        acknowledged = []
        for payload in payloads:
            await outgoing.asend_bytes(payload)
            acknowledged.append(await outgoing.arecv())
        return received, payloads, acknowledged

    received, payloads, acknowledged = run(loop_kind, main())
    sender.join(10)
    receiver.join(10)
    assert [len(data) for data in received] == sizes
    assert received == payloads
    assert acknowledged == [(len(p), digest(p)) for p in payloads]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_sender_awaits_room_while_its_ring_is_full(loop_kind):
    reader, writer = Pipe()
    count = 20000  # many times what the ring holds

    async def main():
        async def produce():
            for i in range(count):
                await writer.asend_bytes(i.to_bytes(4, "little") * 256)

        producing = asyncio.ensure_future(produce())
        await asyncio.sleep(0.05)  # the producer is asleep on a full ring by now
        got = [int.from_bytes((await reader.arecv_bytes())[:4], "little") for _ in range(count)]
        await producing
        return got

    assert run(loop_kind, main()) == list(range(count))


def serve_listener(address, rounds):
    with Client(address, authkey=b"secret") as conn:
        for _ in range(rounds):
            conn.send(conn.recv() * 2)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_connection_accepted_by_a_listener_is_awaited(loop_kind):
    rounds = 500
    with Listener(authkey=b"secret") as listener:
        peer = fork.Process(target=serve_listener, args=(listener.address, rounds))
        peer.start()
        conn = listener.accept()

    async def main():
        answers = []
        for i in range(rounds):
            await conn.asend(i)
            answers.append(await conn.arecv())
        with pytest.raises(EOFError):
            await conn.arecv()
        return answers

    with conn:
        assert run(loop_kind, main()) == [2 * i for i in range(rounds)]
    peer.join(10)
    assert peer.exitcode == 0


def test_the_package_exports_the_awaiting_methods():
    for name in ("arecv", "arecv_bytes", "asend", "asend_bytes"):
        assert asyncio.iscoroutinefunction(getattr(xproc.connection.Connection, name))
