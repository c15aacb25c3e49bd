"""The array rows of `./dev.sh bench python`: numpy arrays from a producer process to a
consumer (the parent), through xproc's Queue (no pickle: the array's bytes are copied once
into the queue's shared memory, and once out into the consumer's new array) against:

* `multiprocessing.Queue`, which pickles each array (Python 3.11's default pickle
  protocol, 4: the elements go in-band, copied into the pickle) and writes the pickle
  through an OS pipe, and unpickles a copy;
* a hand-written `multiprocessing.shared_memory` hand-off, the usual way round pickling:
  the producer creates a block, copies the array in and sends the block's name (with
  the shape and dtype) over a `multiprocessing.Queue`; the consumer opens the block,
  copies the array out, closes and unlinks it;
* `numpy.copyto` of the same array into a preallocated one in the consumer process: one
  plain memcpy, the floor for any hand-off that copies; and the same into eight
  preallocated arrays in turn, whose copies write to memory the cache has lost (64 MiB
  against a 32 MiB L3), as a queue's ring's do.

`get_view` rows: the consumer reads each array in place in the queue (`with
q.get_view() as a`), no copy out. To keep that honest without copying, it sums one
float64 per 4 KiB page (`numpy.asarray(a)[::512].sum()`): every page of the message is
read from the shared memory, and the 8 MiB are not streamed through the cache a second
time. Against the memcpy, this is the one copy a queue must make (in the producer)
against the one copy anything must make. The put+get row reports the usual get (a copy
out into a new array) against the same memcpy.

Every throughput is the stream's: timed from the consumer's receipt of the first array to
its receipt of the last (so a process start, which costs as much as tens of 8 MiB arrays,
is in no figure), count - 1 arrays over that time; every array received is checked (its
last element, or one element per page). Within each repetition the implementations take
turns, and each figure is the median.

`python bench/python/array_compare.py [--reps N] [--scale F]` prints these rows alone.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing import resource_tracker, shared_memory
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import xproc
from python_compare import medians, row, run_rows_alone

MIB_8 = np.arange(1 << 20, dtype=np.float64)  # 8 MiB
KIB_64 = np.arange(1 << 13, dtype=np.float64)  # 64 KiB
FLOATS_PER_PAGE = 4096 // 8


def put_arrays(q: Any, payload: np.ndarray, count: int) -> None:
    for _ in range(count):
        q.put(payload)
    q.put(None)


def timed_consumer(make_queue: Callable[[], Any], payload: np.ndarray, count: int,
                   consume: Callable[[Any], Optional[np.ndarray]]) -> float:
    """Arrays per second from a producer process to `consume(q)`, which takes one message
    and returns what it got of the array (None at the end)."""
    q = make_queue()
    producer = mp.Process(target=put_arrays, args=(q, payload, count))
    producer.start()
    assert consume(q) is not None
    started = time.perf_counter()
    received = 1
    while consume(q) is not None:
        received += 1
    elapsed = time.perf_counter() - started
    producer.join()
    assert received == count
    return (count - 1) / elapsed


def get_copy(q: Any) -> Optional[np.ndarray]:
    got = q.get()
    if got is not None:
        assert got[-1] == got.size - 1
    return got


def get_view_touching_pages(q: xproc.Queue) -> Optional[np.ndarray]:
    """Reads one float64 per page of the next array where it lies; returns those."""
    with q.get_view() as view:
        if view is None:
            return None
        pages = np.asarray(view)[::FLOATS_PER_PAGE].copy()
    assert pages.sum() == FLOATS_PER_PAGE * (pages.size * (pages.size - 1) / 2)
    return pages


def through_queue(make_queue: Callable[[], Any], payload: np.ndarray, count: int) -> float:
    return timed_consumer(make_queue, payload, count, get_copy)


def through_get_view(payload: np.ndarray, count: int) -> float:
    return timed_consumer(xproc.Queue, payload, count, get_view_touching_pages)


# --- The shared_memory hand-off ----------------------------------------------------------
def put_through_shared_memory(names: Any, payload: np.ndarray, count: int) -> None:
    for _ in range(count):
        block = shared_memory.SharedMemory(create=True, size=payload.nbytes)
        np.ndarray(payload.shape, payload.dtype, buffer=block.buf)[...] = payload
        names.put((block.name, payload.shape, payload.dtype.str))
        block.close()  # the consumer unlinks it
    names.put(None)


def through_shared_memory(payload: np.ndarray, count: int) -> float:
    # One resource tracker for both processes (started before the fork): the blocks the
    # producer creates are the ones the consumer unlinks.
    resource_tracker.ensure_running()
    names = mp.Queue()
    producer = mp.Process(target=put_through_shared_memory, args=(names, payload, count))
    producer.start()

    def take() -> bool:
        sent = names.get()
        if sent is None:
            return False
        name, shape, dtype = sent
        block = shared_memory.SharedMemory(name=name)
        got = np.array(np.ndarray(shape, dtype, buffer=block.buf))  # the copy out
        block.close()
        block.unlink()
        assert got[-1] == got.size - 1
        return True

    assert take()
    started = time.perf_counter()
    received = 1
    while take():
        received += 1
    elapsed = time.perf_counter() - started
    producer.join()
    assert received == count
    return (count - 1) / elapsed


def memcpy_rate(payload: np.ndarray, count: int, targets: int = 1) -> float:
    """numpy.copyto of `payload` into preallocated arrays (`targets` of them in turn), per
    second. One target stays in the cache between copies (8 MiB source and target fit a
    32 MiB L3); eight in turn (64 MiB) make each copy write to memory the cache has lost,
    as a queue's ring does."""
    arrays = [np.empty_like(payload) for _ in range(targets)]
    for target in arrays:
        np.copyto(target, payload)  # fault their pages in first
    started = time.perf_counter()
    for i in range(count):
        np.copyto(arrays[i % targets], payload)
    return count / (time.perf_counter() - started)


def array_rows(reps: int, n: Callable[[int], int], report: Callable[[Dict[str, Any]], None]) -> None:
    """Measures the array workloads and passes each row to `report`; `n` scales counts."""
    big = max(4, n(200))
    ours, pickled, handed, view, copied, copied_cold = medians(reps, [
        lambda: through_queue(xproc.Queue, MIB_8, big),
        lambda: through_queue(mp.Queue, MIB_8, big),
        lambda: through_shared_memory(MIB_8, big),
        lambda: through_get_view(MIB_8, big),
        lambda: memcpy_rate(MIB_8, big),
        lambda: memcpy_rate(MIB_8, big, targets=8),
    ])
    workload = "Queue, 8 MiB float64 array, 1 producer -> 1 consumer"
    report(row(workload, "arrays/s", ours, "multiprocessing.Queue", pickled, ">= 20", True, 20))
    report(row(workload, "arrays/s", ours, "shared_memory hand-off", handed, ">= 1.5", True, 1.5))
    report(row(workload + ", put+get", "fraction of memcpy", ours, "numpy.copyto 8 MiB", copied, "", True, 0))
    view_workload = "Queue get_view, 8 MiB float64 array, 1 producer -> 1 consumer"
    report(row(view_workload, "fraction of memcpy", view, "numpy.copyto 8 MiB", copied, ">= 0.8", True, 0.8))
    report(row(view_workload, "fraction of memcpy", view, "numpy.copyto 8 MiB, 8 targets", copied_cold, "", True, 0))

    small = n(20000)
    ours, pickled = medians(reps, [lambda: through_queue(xproc.Queue, KIB_64, small),
                                   lambda: through_queue(mp.Queue, KIB_64, small)])
    report(row("Queue, 64 KiB float64 array, 1 producer -> 1 consumer", "arrays/s", ours, "multiprocessing.Queue",
               pickled, ">= 10", True, 10))


def main(argv: Optional[List[str]] = None) -> None:
    run_rows_alone(array_rows, __doc__, argv)


if __name__ == "__main__":
    main()
