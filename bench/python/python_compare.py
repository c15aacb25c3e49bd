"""`./dev.sh bench python`: the xproc Python package against multiprocessing (numpy arrays
also against a shared_memory hand-off and a plain copy: array_compare.py; awaited from
asyncio, against aioprocessing and pyzmq: asyncio_compare.py; BaseManager.register's
types against multiprocessing's BaseManager: registered_compare.py; queues, ping-pong and
the Manager dict against pyzmq, faster-fifo, iceoryx2, UltraDict and shared-memory-dict:
peers_compare.py), same payloads, same run, medians of several repetitions, written as a
list of {workload, metric, xproc, peer, peer_value, ratio, target, met} to --out.

Every workload runs the two implementations alternately inside each repetition, so a
noisy neighbour on the machine hits both alike; ratios are what the targets judge.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import xproc

SMALL_DICT = {"id": 12345, "name": "sensor-7", "value": 21.5, "ok": True}
BIG_BYTES = b"x" * 65536


# --- Queue throughput: one producer process, the parent consumes -------------------------
def produce(q: Any, payload: Any, count: int) -> None:
    for _ in range(count):
        q.put(payload)
    q.put(None)


def queue_throughput(make_queue: Callable[[], Any], payload: Any, count: int) -> float:
    q = make_queue()
    producer = mp.Process(target=produce, args=(q, payload, count))
    started = time.perf_counter()
    producer.start()
    received = 0
    while q.get() is not None:
        received += 1
    elapsed = time.perf_counter() - started
    producer.join()
    assert received == count
    return count / elapsed


# --- Ping-pong: the child echoes; the parent times each round trip -------------------------
def echo(requests: Any, replies: Any) -> None:
    while True:
        message = requests.get()
        replies.put(message)
        if message is None:
            return


def queue_ping_pong_p50_us(make_queue: Callable[[], Any], rounds: int) -> float:
    requests, replies = make_queue(), make_queue()
    child = mp.Process(target=echo, args=(requests, replies))
    child.start()
    for _ in range(200):  # warm up both processes
        requests.put(SMALL_DICT)
        replies.get()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        requests.put(SMALL_DICT)
        replies.get()
        samples.append(time.perf_counter() - started)
    requests.put(None)
    replies.get()
    child.join()
    return statistics.median(samples) * 1e6


# --- Pipe throughput: a child sends, the parent receives ------------------------------------
def send_many(conn: Any, payload: Any, count: int) -> None:
    for _ in range(count):
        conn.send(payload)
    conn.send(None)


def pipe_throughput(make_pipe: Callable[[], Any], payload: Any, count: int) -> float:
    receiver, sender = make_pipe()
    child = mp.Process(target=send_many, args=(sender, payload, count))
    started = time.perf_counter()
    child.start()
    received = 0
    while receiver.recv() is not None:
        received += 1
    elapsed = time.perf_counter() - started
    child.join()
    assert received == count
    return count / elapsed


# --- Manager dict: sequential latency, and aggregate ops/s of N client processes ----------
def dict_ops(d: Any, count: int, key: str, barrier: Any) -> None:
    barrier.wait()
    for i in range(count):
        d[key] = i
        d[key]


def manager_sequential_us(manager: Any, count: int) -> float:
    d = manager.dict()
    for i in range(100):
        d["k"] = i
    started = time.perf_counter()
    for i in range(count):
        d["k"] = i
        d["k"]
    return (time.perf_counter() - started) / (2 * count) * 1e6


def processes_rate(work: Callable[..., None], args_of: Callable[[int, Any], tuple], clients: int,
                   ops_each: int) -> float:
    """Operations per second of `clients` processes, each running work(*args_of(i, barrier))
    (which waits at the barrier first), timed from their common start to the last one's end."""
    barrier = mp.Barrier(clients + 1)
    workers = [mp.Process(target=work, args=args_of(i, barrier)) for i in range(clients)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    assert all(w.exitcode == 0 for w in workers)
    return clients * ops_each / elapsed


def manager_clients_ops(manager: Any, clients: int, count: int) -> float:
    d = manager.dict()
    return processes_rate(dict_ops, lambda i, barrier: (d, count, f"k{i}", barrier), clients, 2 * count)


# --- Creation: how long a new Queue() or Pipe() takes (and closing it) ---------------------
def creation_us(make: Callable[[], Any], count: int) -> float:
    made = []
    started = time.perf_counter()
    for _ in range(count):
        made.append(make())
    elapsed = time.perf_counter() - started
    del made
    return elapsed / count * 1e6


def row(workload: str, metric: str, ours: float, peer: str, theirs: float, target: str, higher_is_better: bool,
        threshold: float) -> Dict[str, Any]:
    ratio = ours / theirs
    met = ratio >= threshold if higher_is_better else ratio <= threshold
    return {"workload": workload, "metric": metric, "xproc": round(ours, 3), "peer": peer,
            "peer_value": round(theirs, 3), "ratio": round(ratio, 4), "target": target, "met": met}


def format_row(r: Dict[str, Any]) -> str:
    return (f"{r['workload']:<42} {r['metric']:<22} xproc {r['xproc']:>12} {r['peer']:<26} "
            f"{r['peer_value']:>12}  ratio {r['ratio']:<8} {r['target']:<7} {'met' if r['met'] else 'MISSED'}")


def run_rows_alone(rows: Callable[[int, Callable[[int], int], Callable[[Dict[str, Any]], None]], None],
                   description: Optional[str], argv: Optional[List[str]] = None) -> None:
    """The command line of a rows file run by itself (array_compare.py, asyncio_compare.py,
    peers_compare.py): --reps and --scale as python_compare.py takes them, each row printed."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies message counts (0.05 for a smoke run)")
    args = parser.parse_args(argv)
    rows(args.reps, lambda count: max(10, int(count * args.scale)), lambda r: print(format_row(r), flush=True))


def medians(reps: int, measures: List[Callable[[], float]]) -> List[float]:
    """The median of each measure over `reps` repetitions, the measures taking turns."""
    samples: List[List[float]] = [[] for _ in measures]
    for _ in range(reps):
        for measure, taken in zip(measures, samples):
            taken.append(measure())
    return [statistics.median(taken) for taken in samples]


def median_pair(reps: int, ours: Callable[[], float], theirs: Callable[[], float]) -> tuple:
    a, b = [], []
    for _ in range(reps):
        a.append(ours())
        b.append(theirs())
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies message counts (0.05 for a smoke run)")
    args = parser.parse_args()
    n = lambda count: max(10, int(count * args.scale))  # noqa: E731
    rows: List[Dict[str, Any]] = []

    def report(r: Dict[str, Any]) -> None:
        rows.append(r)
        print(format_row(r), flush=True)

    ours, theirs = median_pair(args.reps, lambda: queue_throughput(xproc.Queue, SMALL_DICT, n(50000)),
                               lambda: queue_throughput(mp.Queue, SMALL_DICT, n(50000)))
    report(row("Queue, small dict, 1 producer -> 1 consumer", "messages/s", ours, "multiprocessing.Queue",
               theirs, ">= 5", True, 5))
    ours, theirs = median_pair(args.reps, lambda: queue_throughput(xproc.Queue, BIG_BYTES, n(5000)),
                               lambda: queue_throughput(mp.Queue, BIG_BYTES, n(5000)))
    report(row("Queue, 64 KiB bytes, 1 producer -> 1 consumer", "messages/s", ours, "multiprocessing.Queue",
               theirs, "", True, 1))
    for mib, count in ((16, 40), (100, 8)):
        payload = b"m" * (mib << 20)
        ours, theirs = median_pair(3, lambda: queue_throughput(xproc.Queue, payload, max(2, n(count))),
                                   lambda: queue_throughput(mp.Queue, payload, max(2, n(count))))
        report(row(f"Queue, {mib} MiB bytes, 1 producer -> 1 consumer", "messages/s", ours, "multiprocessing.Queue",
                   theirs, ">= 30", True, 30))
    ours, theirs = median_pair(args.reps, lambda: creation_us(xproc.Queue, n(200)),
                               lambda: creation_us(mp.Queue, n(200)))
    report(row("Queue() creation", "us each", ours, "multiprocessing.Queue()", theirs, "<= 2", False, 2))
    ours, theirs = median_pair(args.reps, lambda: creation_us(xproc.Pipe, n(200)),
                               lambda: creation_us(mp.Pipe, n(200)))
    report(row("Pipe() creation", "us each", ours, "multiprocessing.Pipe()", theirs, "<= 2", False, 2))
    ours, theirs = median_pair(args.reps, lambda: queue_ping_pong_p50_us(xproc.Queue, n(5000)),
                               lambda: queue_ping_pong_p50_us(mp.Queue, n(5000)))
    report(row("Queue ping-pong, small dict", "round trip p50 (us)", ours, "multiprocessing.Queue", theirs,
               "<= 0.2", False, 0.2))
    ours, theirs = median_pair(args.reps, lambda: pipe_throughput(lambda: xproc.Pipe(duplex=False), SMALL_DICT,
                                                                  n(50000)),
                               lambda: pipe_throughput(lambda: mp.Pipe(duplex=False), SMALL_DICT, n(50000)))
    report(row("Pipe, small dict, one way", "messages/s", ours, "multiprocessing.Pipe", theirs, ">= 2", True, 2))

    with xproc.Manager() as xm, mp.Manager() as pm:
        ours, theirs = median_pair(args.reps, lambda: manager_sequential_us(xm, n(5000)),
                                   lambda: manager_sequential_us(pm, n(5000)))
        report(row("Manager dict set+get, 1 client", "per-op mean (us)", ours, "multiprocessing.Manager", theirs,
                   "<= 1.0", False, 1.0))
        ours, theirs = median_pair(args.reps, lambda: manager_clients_ops(xm, 4, n(5000)),
                                   lambda: manager_clients_ops(pm, 4, n(5000)))
        report(row("Manager dict set+get, 4 client processes", "ops/s", ours, "multiprocessing.Manager", theirs,
                   ">= 3", True, 3))

    # The registered-type rows (registered_compare.py): BaseManager.register.
    from registered_compare import registered_rows

    registered_rows(args.reps, n, report)

    # The array rows (array_compare.py): numpy arrays, which the test dependencies include.
    try:
        from array_compare import array_rows
    except ImportError as missing:
        print(f"array rows skipped: {missing} (pip install numpy)", file=sys.stderr, flush=True)
    else:
        array_rows(args.reps, n, report)

    # The asyncio rows (asyncio_compare.py), whose peers `./dev.sh bench` installs.
    try:
        from asyncio_compare import asyncio_rows
    except ImportError as missing:
        print(f"asyncio rows skipped: {missing} (./dev.sh bench python installs aioprocessing and pyzmq)",
              file=sys.stderr, flush=True)
    else:
        asyncio_rows(args.reps, n, report)

    # The third-party peer rows (peers_compare.py), whose packages `./dev.sh bench` installs.
    try:
        from peers_compare import peer_rows
    except ImportError as missing:
        print(f"peer rows skipped: {missing} (./dev.sh bench python installs pyzmq, faster-fifo, iceoryx2, "
              "UltraDict, atomics and shared-memory-dict)", file=sys.stderr, flush=True)
    else:
        peer_rows(args.reps, n, report)

    with open(args.out, "w") as out:
        json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
