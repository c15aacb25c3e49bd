"""The registered-type rows of `./dev.sh bench python`: calls per second on an object of a
type registered with `BaseManager.register`, living in the manager's server process,
through xproc's BaseManager against multiprocessing's with the same class.

multiprocessing's server runs a thread per client connection and pickles each call and
reply over a socket; xproc's runs the method on a worker thread with the GIL, the call and
reply travelling as Cap'n Proto over the Manager's connection (a shared-memory lane over a
unix socket). The workload is one method call with an int argument returning an int,
`tally.add(1)`, from one client (this process) and from four client processes at once
(forked, each with a proxy pickled to it). Within each repetition the two managers take
turns; each figure is the median.

`python bench/python/registered_compare.py [--reps N] [--scale F]` prints these rows alone.
"""

from __future__ import annotations

import argparse
import multiprocessing.managers
import statistics
import time
from typing import Any, Callable, Dict

import xproc.managers
from python_compare import format_row, processes_rate, row


class Tally:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total


class XprocTallies(xproc.managers.BaseManager):
    pass


class PeerTallies(multiprocessing.managers.BaseManager):
    pass


XprocTallies.register("Tally", Tally)
PeerTallies.register("Tally", Tally)


def call_rate(tally: Any, count: int, barrier: Any = None) -> float:
    for _ in range(100):
        tally.add(1)  # connected and warm
    if barrier is not None:
        barrier.wait()
    started = time.perf_counter()
    for _ in range(count):
        tally.add(1)
    return count / (time.perf_counter() - started)


def clients_rate(manager: Any, clients: int, count: int) -> float:
    """Calls per second of `clients` processes calling one object at once."""
    tally = manager.Tally()
    return processes_rate(call_rate, lambda i, barrier: (tally, count, barrier), clients, count)


def registered_rows(reps: int, n: Callable[[int], int], report: Callable[[Dict[str, Any]], None]) -> None:
    """Measures the registered-type workloads and passes each row to `report`."""
    with XprocTallies() as ours_manager, PeerTallies() as peer_manager:
        ours_tally, peer_tally = ours_manager.Tally(), peer_manager.Tally()
        for clients in (1, 4):
            ours, theirs = [], []
            for _ in range(reps):
                if clients == 1:
                    ours.append(call_rate(ours_tally, n(20000)))
                    theirs.append(call_rate(peer_tally, n(20000)))
                else:
                    ours.append(clients_rate(ours_manager, clients, n(10000)))
                    theirs.append(clients_rate(peer_manager, clients, n(10000)))
            who = "1 client" if clients == 1 else f"{clients} client processes"
            report(row(f"Registered type (BaseManager.register), {who}", "calls/s", statistics.median(ours),
                       "multiprocessing BaseManager", statistics.median(theirs), ">= 3", True, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    registered_rows(args.reps, lambda count: max(10, int(count * args.scale)), lambda r: print(format_row(r), flush=True))


if __name__ == "__main__":
    main()
