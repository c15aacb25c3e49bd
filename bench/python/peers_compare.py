"""The peer rows of `./dev.sh bench python`: xproc against the strongest third-party
packages a Python program would pick instead of it, each configured as its documentation
recommends for several processes (shared-memory-dict with one lock more: see below).

* Queue throughput, small dicts from a producer process (`queue_throughput`'s workload):
  pyzmq PUSH/PULL over `ipc://` (`send_pyobj`/`recv_pyobj`: pickle, as
  multiprocessing.Queue does) and faster-fifo's `Queue` (a shared-memory circular buffer
  under a process-shared mutex, its default pickling `put`/`get`).
* Ping-pong p50 (`queue_ping_pong_p50_us`'s workload): iceoryx2, zero-copy
  publish-subscribe of a `ctypes.Structure` holding the small dict's fields (it carries
  nothing else), over two services, both processes busy-polling `receive()`; the echo
  process is spawned (see iceoryx2_ping_pong_p50_us), so a script running these rows
  needs the usual `if __name__ == "__main__":` guard.
* Manager dict set+get from one client (per-op mean) and from four client processes
  (aggregate ops/s): UltraDict (an update stream in shared memory that every process
  replays into its own dict copy; `shared_lock=True`, an atomic lock in shared memory, so
  several processes may write) and shared-memory-dict (one pickled dict in a shared-memory
  block, read whole by every get and rewritten whole by every set).

Within each repetition the implementations take turns, so a noisy neighbour hits them
alike; each figure is the median of its repetitions. Every message is counted, the last
one compared; every dict value read is compared with the value just written, and the four
clients' keys are checked once they are done. Each peer's sockets, shared memory,
iceoryx2 ports and nodes and temporary directories are released in `finally` blocks, so a
failing repetition leaves nothing behind.

`python bench/python/peers_compare.py [--reps N] [--scale F]` prints these rows alone.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import multiprocessing as mp
import multiprocessing.synchronize
import os
import statistics
import tempfile
import time
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Dict, List, Optional, Tuple

# shared-memory-dict locks its writes across processes only when SHARED_MEMORY_USE_LOCK=1
# is in the environment at its first import (a module-level multiprocessing.Lock made then,
# shared by the processes forked afterwards), so it is set here, before the import below,
# as its documentation says to for several writers. That is not enough (0.7.2):
# `_modify_db` is `@contextmanager` over `@lock`, so the lock is held while the generator
# is made and released before the read-modify-write of the dict runs; four clients setting
# their own keys still lose one another's sets. LockedSharedMemoryDict below adds the lock
# that makes them safe. Reads take no lock, by design.
os.environ["SHARED_MEMORY_USE_LOCK"] = "1"

import atomics  # noqa: E402,F401  (UltraDict's shared_lock=True needs it: missing, the rows are skipped)
import faster_fifo  # noqa: E402
import iceoryx2 as iox2  # noqa: E402
import shared_memory_dict  # noqa: E402
import shared_memory_dict.lock  # noqa: E402
import zmq  # noqa: E402

# Importing UltraDict monkey-patches multiprocessing.resource_tracker for the whole process
# (and its children): shared memory is no longer tracked, so nothing unlinks a block at
# exit but its owner. python_compare.py imports this module after its other rows, and
# every block made here is unlinked explicitly.
from UltraDict import UltraDict  # noqa: E402

import xproc  # noqa: E402
from python_compare import (  # noqa: E402
    SMALL_DICT, medians, processes_rate, produce, queue_ping_pong_p50_us, queue_throughput, row, run_rows_alone)

if not isinstance(shared_memory_dict.lock._lock, multiprocessing.synchronize.Lock):
    raise ImportError("shared_memory_dict was imported before SHARED_MEMORY_USE_LOCK=1 was set: it has no lock")

RECEIVE_TIMEOUT_S = 60.0  # a peer that stops delivering fails the repetition instead of hanging it
WARM_UP_ROUNDS = 200  # as queue_ping_pong_p50_us
_runs = itertools.count()


def reap(process: Any, timeout: float = 10.0) -> None:
    """Joins `process`; terminates (then kills) it if it is still running after `timeout`."""
    if process is None or process.pid is None:
        return
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(5)
    if process.is_alive():
        process.kill()
        process.join()


# --- Queue throughput: a producer process sends small dicts, the parent receives ------------
def zmq_produce(address: str, count: int, consumed: Any) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    try:
        push.connect(address)
        for _ in range(count):
            push.send_pyobj(SMALL_DICT)
        push.send_pyobj(None)
        # Connected until the consumer has everything: a PUSH socket closed (even with an
        # infinite linger) and gone before the consumer caught up lost the messages in
        # flight (see asyncio_compare.py).
        consumed.wait(RECEIVE_TIMEOUT_S)
    finally:
        push.close(linger=0)
        context.term()


def receive_until_none(receive: Callable[[], Any]) -> Tuple[int, Any]:
    """Receives until the producer's closing None: how many came before it, and the last."""
    received, last = 0, None
    while (message := receive()) is not None:
        received += 1
        last = message
    return received, last


def zmq_throughput(count: int) -> float:
    """pyzmq: the PULL socket binds `ipc://` in a fresh temporary directory, the producer's
    PUSH socket connects; timed like queue_throughput, from just before the producer starts
    to the receipt of `None`."""
    with tempfile.TemporaryDirectory(prefix="xproc-bench-") as directory:
        address = f"ipc://{directory}/pull"
        context = zmq.Context()
        pull = context.socket(zmq.PULL)
        pull.setsockopt(zmq.RCVTIMEO, int(RECEIVE_TIMEOUT_S * 1000))  # zmq.Again, not a hang
        consumed = mp.Event()
        producer = None
        try:
            pull.bind(address)
            producer = mp.Process(target=zmq_produce, args=(address, count, consumed))
            started = time.perf_counter()
            producer.start()
            received, last = receive_until_none(pull.recv_pyobj)
            elapsed = time.perf_counter() - started
        finally:
            consumed.set()
            reap(producer)
            pull.close(linger=0)
            context.term()
    assert producer.exitcode == 0, producer.exitcode
    assert received == count and last == SMALL_DICT, (received, last)
    return count / elapsed


def fifo_throughput(count: int) -> float:
    """faster-fifo: the producer is queue_throughput's `produce` (blocking `put`s); the
    consumer `get`s one message at a time, as queue_throughput does."""
    # Its circular buffer is fixed at creation and a put waits (then raises queue.Full)
    # when it has no room: sized for every message of the run with their 8-byte headers, so
    # the producer never waits for the consumer (xproc's queue grows to 1 GiB by default).
    message_bytes = len(ForkingPickler.dumps(SMALL_DICT)) + 8
    q = faster_fifo.Queue(max_size_bytes=max(1_000_000, 2 * (count + 1) * message_bytes))
    producer = mp.Process(target=produce, args=(q, SMALL_DICT, count))
    try:
        started = time.perf_counter()
        producer.start()
        # get's timeout defaults to 10 s, after which it raises queue.Empty.
        received, last = receive_until_none(functools.partial(q.get, timeout=RECEIVE_TIMEOUT_S))
        elapsed = time.perf_counter() - started
    finally:
        reap(producer)
        q.close()
        del q  # its buffer is multiprocessing heap memory, given back when unreferenced
    assert producer.exitcode == 0, producer.exitcode
    assert received == count and last == SMALL_DICT, (received, last)
    return count / elapsed


# --- Ping-pong: iceoryx2 publish-subscribe of a ctypes.Structure --------------------------
class SmallRecord(ctypes.Structure):
    """SMALL_DICT's fields in a fixed layout: iceoryx2 carries ctypes types only."""

    _fields_ = [("id", ctypes.c_int64), ("value", ctypes.c_double), ("ok", ctypes.c_bool),
                ("name", ctypes.c_char * 16)]


SMALL_RECORD = {"id": SMALL_DICT["id"], "value": SMALL_DICT["value"], "ok": SMALL_DICT["ok"],
                "name": SMALL_DICT["name"].encode()}


def iceoryx2_node() -> Any:
    # The default config (no config file) is announced as a warning on every node creation.
    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    return iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)


def iceoryx2_receive(subscriber: Any) -> Any:
    """The next sample, busy-polling `receive()` (None while nothing waits) as iceoryx2's
    examples do; TimeoutError after RECEIVE_TIMEOUT_S, since a lost sample never comes."""
    sample = subscriber.receive()
    if sample is not None:
        return sample
    deadline = time.perf_counter() + RECEIVE_TIMEOUT_S
    while True:
        for _ in range(1000):
            sample = subscriber.receive()
            if sample is not None:
                return sample
        if time.perf_counter() > deadline:
            raise TimeoutError("iceoryx2: no sample")


def iceoryx2_echo(prefix: str, ready: Any) -> None:
    node = iceoryx2_node()
    requests = node.service_builder(iox2.ServiceName.new(prefix + "/requests")).publish_subscribe(SmallRecord).open()
    replies = node.service_builder(iox2.ServiceName.new(prefix + "/replies")).publish_subscribe(SmallRecord).open()
    subscriber = requests.subscriber_builder().create()
    publisher = replies.publisher_builder().create()
    try:
        publisher.update_connections()  # the parent's subscriber exists already
        ready.set()
        while True:
            sample = iceoryx2_receive(subscriber)
            record = sample.payload().contents
            reply = publisher.loan_uninit().write_payload(record)  # copies the record
            last = record.id < 0
            sample.delete()
            delivered = reply.send()
            if delivered != 1:
                raise RuntimeError(f"iceoryx2 echo: a reply reached {delivered} subscribers")
            if last:
                return
    finally:
        publisher.delete()
        subscriber.delete()


def iceoryx2_ping_pong_p50_us(rounds: int) -> float:
    """Two services, requests and replies, made by the parent (one publisher, one subscriber
    each side); the child opens them, echoes every record it receives, and stops at id -1.
    The parent sends the same record each round and busy-polls for the echo."""
    prefix = f"xproc-bench/{os.getpid()}/{next(_runs)}"
    node: Any = None
    requests: Any = None
    replies: Any = None
    publisher: Any = None
    subscriber: Any = None
    child: Any = None
    try:
        node = iceoryx2_node()
        requests = node.service_builder(iox2.ServiceName.new(prefix + "/requests")).publish_subscribe(
            SmallRecord).create()
        replies = node.service_builder(iox2.ServiceName.new(prefix + "/replies")).publish_subscribe(
            SmallRecord).create()
        publisher = requests.publisher_builder().create()
        subscriber = replies.subscriber_builder().create()
        # The echo process is spawned, a fresh interpreter as iceoryx2's processes normally
        # are: a forked child killed mid-run stays "alive" to its parent's iceoryx2 (0.10),
        # whose try_cleanup_dead_nodes then leaves the child's node and ports behind.
        spawn = mp.get_context("spawn")
        ready = spawn.Event()
        child = spawn.Process(target=iceoryx2_echo, args=(prefix, ready))
        child.start()
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while not ready.wait(0.05):
            if not child.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"iceoryx2 echo process not ready (exit code {child.exitcode})")
        # A sample sent before a subscriber is connected reaches no one: the child's are
        # made before it reports ready, and the publisher connects to them now.
        assert requests.dynamic_config.number_of_subscribers == 1
        assert replies.dynamic_config.number_of_publishers == 1
        publisher.update_connections()
        record = SmallRecord(**SMALL_RECORD)
        samples = []
        for i in range(WARM_UP_ROUNDS + rounds):
            started = time.perf_counter()
            delivered = publisher.loan_uninit().write_payload(record).send()
            reply = iceoryx2_receive(subscriber)
            echoed = reply.payload().contents
            elapsed = time.perf_counter() - started
            if i >= WARM_UP_ROUNDS:
                samples.append(elapsed)
            assert delivered == 1, delivered  # the number of subscribers the sample reached
            fields = (echoed.id, echoed.value, echoed.ok, echoed.name)
            assert fields == (record.id, record.value, record.ok, record.name), fields
            reply.delete()
        delivered = publisher.loan_uninit().write_payload(SmallRecord(id=-1)).send()
        assert delivered == 1, delivered
        reply = iceoryx2_receive(subscriber)
        assert reply.payload().contents.id == -1
        reply.delete()
        child.join(RECEIVE_TIMEOUT_S)
        assert child.exitcode == 0, child.exitcode
    finally:
        reap(child)
        for port in (publisher, subscriber):
            if port is not None:
                port.delete()
        if node is not None and child is not None and child.exitcode != 0:
            node.try_cleanup_dead_nodes()  # what a killed echo process left in /tmp/iceoryx2
        requests = replies = node = None  # the services go with their last port and node
    return statistics.median(samples) * 1e6


# --- Manager dict: set+get, one client and four client processes ---------------------------
# UltraDict appends every set to an update stream in shared memory (6 header bytes and the
# pickled (mode, key, value): 25 bytes for these keys and values) and, when the stream is
# full, pickles the whole dict into a new block that every process reloads. Sized for every
# set of the measurement (with room to spare), so none is written: its fastest state.
ULTRADICT_BYTES_PER_SET = 64
# shared-memory-dict reads the whole block (`buf.tobytes()`) for every get and set; the
# pickled dict of four small keys takes under 100 bytes, so one small block.
SHARED_MEMORY_DICT_BYTES = 1024


class LockedSharedMemoryDict(shared_memory_dict.SharedMemoryDict):
    """shared-memory-dict with every set (a read-modify-write of the whole dict) under
    `lock`, a multiprocessing.Lock its clients share (see SHARED_MEMORY_USE_LOCK above);
    gets are the package's own, lock-free."""

    def __init__(self, name: str, size: int, lock: Any) -> None:
        super().__init__(name, size)
        self.set_lock = lock

    def __setitem__(self, key: str, value: Any) -> None:
        with self.set_lock:
            super().__setitem__(key, value)


def set_get(d: Any, key: str, count: int) -> None:
    for i in range(count):
        d[key] = i
        if d[key] != i:
            raise AssertionError(f"{key}: read {d[key]!r} after writing {i}")


def sequential_us(d: Any, count: int) -> float:
    """Per-operation mean of `count` sets and gets of one key, after 100 sets."""
    for i in range(100):
        d["k"] = i
    started = time.perf_counter()
    set_get(d, "k", count)
    return (time.perf_counter() - started) / (2 * count) * 1e6


def open_dict(kind: str, handle: Any) -> Tuple[Any, Callable[[], None]]:
    """In a client process: the dict `handle` names, and how to let it go."""
    if kind == "xproc":
        return handle, lambda: None  # a proxy, passed to the child
    if kind == "UltraDict":
        d = UltraDict(name=handle, create=False, shared_lock=True)
        return d, d.close  # the creator unlinks
    name, lock = handle
    d = LockedSharedMemoryDict(name, SHARED_MEMORY_DICT_BYTES, lock)
    return d, d.cleanup  # closes; the creator unlinks


def client_ops(kind: str, handle: Any, count: int, key: str, barrier: Any) -> None:
    """One client process: attaches and writes once, waits for the others at the barrier,
    then sets and gets its own key `count` times, each read checked."""
    try:
        d, close = open_dict(kind, handle)
        d[key] = -1
    except BaseException:
        barrier.abort()  # the parent and the other clients fail instead of waiting forever
        raise
    try:
        barrier.wait()
        set_get(d, key, count)
    finally:
        close()


def clients_ops(kind: str, d: Any, handle: Any, clients: int, count: int) -> float:
    rate = processes_rate(client_ops, lambda i, barrier: (kind, handle, count, f"k{i}", barrier), clients,
                          2 * count)
    for i in range(clients):
        assert d[f"k{i}"] == count - 1, (kind, i, d[f"k{i}"])
    return rate


def new_ultradict(sets: int) -> Any:
    return UltraDict(shared_lock=True, buffer_size=ULTRADICT_BYTES_PER_SET * (sets + 1024))


def check_ultradict(d: Any) -> None:
    full_dumps = d.status()["full_dump_counter_remote"]
    assert full_dumps == 0, f"UltraDict's buffer filled {full_dumps} times: the sizing is off"


def ultradict_sequential_us(count: int) -> float:
    d = new_ultradict(count + 100)
    try:
        taken = sequential_us(d, count)
        check_ultradict(d)
    finally:
        d.unlink()
    return taken


def ultradict_clients_ops(clients: int, count: int) -> float:
    d = new_ultradict(clients * (count + 1))
    try:
        rate = clients_ops("UltraDict", d, d.name, clients, count)
        check_ultradict(d)
    finally:
        d.unlink()
    return rate


def new_shared_memory_dict() -> Tuple[Any, Tuple[str, Any]]:
    """A new block under a fresh name (an existing one of that name would be opened), and
    the handle its clients open it by."""
    name, lock = f"xproc-bench-{os.getpid()}-{next(_runs)}", mp.Lock()
    return LockedSharedMemoryDict(name, SHARED_MEMORY_DICT_BYTES, lock), (name, lock)


def release_shared_memory_dict(d: Any) -> None:
    try:
        d.shm.unlink()
    finally:
        d.cleanup()


def shared_memory_dict_sequential_us(count: int) -> float:
    d, _ = new_shared_memory_dict()
    try:
        return sequential_us(d, count)
    finally:
        release_shared_memory_dict(d)


def shared_memory_dict_clients_ops(clients: int, count: int) -> float:
    d, handle = new_shared_memory_dict()
    try:
        return clients_ops("shared_memory_dict", d, handle, clients, count)
    finally:
        release_shared_memory_dict(d)


def peer_rows(reps: int, n: Callable[[int], int], report: Callable[[Dict[str, Any]], None]) -> None:
    """Measures xproc against the third-party peers and passes each row to `report`; `n`
    scales counts."""
    count = n(50000)
    ours, pyzmq, fifo = medians(reps, [lambda: queue_throughput(xproc.Queue, SMALL_DICT, count),
                                       lambda: zmq_throughput(count),
                                       lambda: fifo_throughput(count)])
    workload = "Queue, small dict, 1 producer -> 1 consumer"
    report(row(workload, "messages/s", ours, "pyzmq PUSH/PULL (ipc)", pyzmq, ">= 3", True, 3))
    report(row(workload, "messages/s", ours, "faster-fifo", fifo, ">= 5", True, 5))

    rounds = n(5000)
    ours, iceoryx2 = medians(reps, [lambda: queue_ping_pong_p50_us(xproc.Queue, rounds),
                                    lambda: iceoryx2_ping_pong_p50_us(rounds)])
    report(row("Queue ping-pong, small dict", "round trip p50 (us)", ours, "iceoryx2 publish-subscribe", iceoryx2,
               "<= 0.5", False, 0.5))

    count = n(5000)
    with xproc.Manager() as manager:
        ours, ultra, smd = medians(reps, [lambda: sequential_us(manager.dict(), count),
                                          lambda: ultradict_sequential_us(count),
                                          lambda: shared_memory_dict_sequential_us(count)])
        workload = "Manager dict set+get, 1 client"
        report(row(workload, "per-op mean (us)", ours, "UltraDict", ultra, "<= 0.667", False, 0.667))
        report(row(workload, "per-op mean (us)", ours, "shared-memory-dict + lock", smd, "", False, float("inf")))

        def xproc_clients() -> float:
            d = manager.dict()
            return clients_ops("xproc", d, d, 4, count)

        ours, ultra, smd = medians(reps, [xproc_clients,
                                          lambda: ultradict_clients_ops(4, count),
                                          lambda: shared_memory_dict_clients_ops(4, count)])
        workload = "Manager dict set+get, 4 client processes"
        report(row(workload, "ops/s", ours, "UltraDict", ultra, ">= 1.5", True, 1.5))
        report(row(workload, "ops/s", ours, "shared-memory-dict + lock", smd, "", True, 0))


def main(argv: Optional[List[str]] = None) -> None:
    run_rows_alone(peer_rows, __doc__, argv)


if __name__ == "__main__":
    main()
