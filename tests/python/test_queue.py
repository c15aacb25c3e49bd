"""xproc.Queue, SimpleQueue and JoinableQueue against multiprocessing's semantics."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import time

import pytest

import xproc
from conftest import interrupt_python, point_capnp, python_env, run_python

START_METHODS = ["fork", "spawn"]


def produce(q, worker, count):
    for i in range(count):
        q.put({"worker": worker, "i": i})


def consume_and_mark_done(q, count):
    for _ in range(count):
        q.get(timeout=20)
        q.task_done()


def test_fifo_with_python_values():
    q = xproc.Queue()
    items = [None, 1, "two", [3.0], {"four": b"4"}]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items)
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_maxsize_full_and_empty_with_timeouts():
    q = xproc.Queue(2)
    q.put(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.1)
    assert time.monotonic() - started >= 0.09  # it did wait for the timeout
    assert [q.get_nowait(), q.get()] == [1, 2]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(block=False)


def test_unsupported_object_fails_at_put_and_the_queue_is_untouched():
    q = xproc.Queue()
    q.put("before")
    with pytest.raises(TypeError, match="'set'"):
        q.put({1, 2})
    q.put("after")
    assert [q.get(), q.get()] == ["before", "after"]


def test_message_too_large_is_a_clear_value_error():
    q = xproc.Queue(capacity_bytes=1 << 16)
    with pytest.raises(xproc.MessageTooLarge):
        q.put(b"x" * (1 << 16))
    q.put(b"small")
    assert q.get() == b"small"


def test_closed_handle_refuses_put_and_get_as_multiprocessing():
    q = xproc.Queue()
    q.put(1)
    q.close()
    for call in (lambda: q.put(2), q.get, q.get_nowait, lambda: q.put_nowait(2), q.get_bytes):
        with pytest.raises(ValueError, match="is closed"):
            call()


def test_closing_one_handle_leaves_the_others_working(unique_name):
    q = xproc.Queue(name=unique_name)
    other = xproc.Queue.open(unique_name)
    q.put("kept")
    q.close()
    assert other.get(timeout=5) == "kept"
    other.put("more")
    assert other.get(timeout=5) == "more"


@pytest.mark.parametrize("name", ["a/b", "..", "", "x" * 300, "sp ace"])
def test_bad_names_are_value_errors(name):
    with pytest.raises(ValueError):
        xproc.Queue(name=name)


def test_named_queue_is_shared_by_name(unique_name):
    producer = xproc.Queue(name=unique_name)
    consumer = xproc.Queue.open(unique_name)
    producer.put("hello")
    assert consumer.get(timeout=5) == "hello"
    assert consumer.name == unique_name
    assert xproc.Queue(name=unique_name).qsize() == 0  # opened, not re-created


def test_named_queue_refuses_another_schema(unique_name):
    xproc.Queue(name=unique_name, schema=point_capnp.Point)
    with pytest.raises(ValueError, match="schema id"):
        xproc.Queue(name=unique_name)


def test_typed_queue_carries_pycapnp_structs(unique_name):
    q = xproc.Queue(name=unique_name, schema=point_capnp.Point)
    q.put(point_capnp.Point.new_message(x=1, y=2, name="p"))
    q.put(point_capnp.Point.new_message(x=3, name="reader").as_reader())
    first, second = q.get(), q.get()
    assert (first.x, first.y, first.name) == (1, 2, "p")
    assert (second.x, second.name) == (3, "reader")
    with pytest.raises(TypeError, match="pycapnp builder or reader"):
        q.put({"x": 1})


def test_raw_bytes_that_are_not_a_value_give_decode_error_and_the_queue_goes_on():
    q = xproc.Queue()
    q.put_bytes(b"\xff" * 24)
    q.put("fine")
    with pytest.raises(xproc.DecodeError):
        q.get()
    assert q.get() == "fine"


@pytest.mark.parametrize("method", START_METHODS)
def test_many_producers_every_message_once(method):
    ctx = mp.get_context(method)
    q = xproc.Queue()
    workers = [ctx.Process(target=produce, args=(q, w, 200)) for w in range(4)]
    for w in workers:
        w.start()
    got = [q.get(timeout=30) for _ in range(800)]
    for w in workers:
        w.join()
    assert sorted((m["worker"], m["i"]) for m in got) == [(w, i) for w in range(4) for i in range(200)]
    for w in range(4):  # FIFO per producer
        assert [m["i"] for m in got if m["worker"] == w] == list(range(200))


@pytest.mark.parametrize("method", START_METHODS)
def test_joinable_queue_join_waits_for_task_done_across_processes(method):
    q = xproc.JoinableQueue()
    for i in range(20):
        q.put(i)
    worker = mp.get_context(method).Process(target=consume_and_mark_done, args=(q, 20))
    worker.start()
    q.join(timeout=30)
    worker.join()
    assert worker.exitcode == 0
    with pytest.raises(ValueError):
        q.task_done()


def test_joinable_queue_join_timeout():
    q = xproc.JoinableQueue()
    q.put(1)
    with pytest.raises(TimeoutError):
        q.join(timeout=0.05)


def test_simple_queue():
    q = xproc.SimpleQueue()
    q.put([1])
    assert not q.empty()
    assert q.get() == [1]


def test_a_consumer_killed_mid_stream_leaves_the_queue_usable():
    q = xproc.Queue()
    for i in range(10000):
        q.put(i)
    pid = os.fork()
    if pid == 0:  # a consumer that is killed at an arbitrary point of its loop
        try:
            while True:
                q.get()
        finally:
            os._exit(0)
    time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    remaining = q.qsize()
    got = [q.get(timeout=5) for _ in range(remaining)]
    assert got == sorted(got)  # whole messages, in order, none torn
    q.put("still works")
    assert q.get() == "still works"


@pytest.mark.parametrize("blocking_call", ["q.get()", "q.put(2)", "jq.join()"])
def test_ctrl_c_interrupts_a_blocked_call(blocking_call):
    code = f"""
import sys, xproc
q = xproc.Queue(1); q.put(1)
if "{blocking_call}" == "q.get()": q.get()
jq = xproc.JoinableQueue(); jq.put(1)
print("blocking", flush=True)
try:
    {blocking_call}
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""
    result = interrupt_python(code)
    assert result.stdout == "interrupted"
    assert result.returncode == 0


def test_pickled_anonymous_queue_reaches_a_spawned_child():
    ctx = mp.get_context("spawn")
    q = xproc.Queue()
    worker = ctx.Process(target=produce, args=(q, 7, 3))
    worker.start()
    assert [q.get(timeout=30)["i"] for _ in range(3)] == [0, 1, 2]
    worker.join()


def test_another_process_that_loaded_the_schema_gets_pycapnp_readers(unique_name):
    q = xproc.Queue(name=unique_name, schema=point_capnp.Point)
    q.put(point_capnp.Point.new_message(x=5, name="spawned"))
    # The reader never names the schema to xproc: it only loaded it (conftest does).
    result = run_python(
        "import sys, xproc, conftest\n"
        "q = xproc.Queue.open(sys.argv[1])\n"
        "p = q.get(timeout=10)\n"
        "print(type(p).__name__, p.x, p.name)",
        unique_name,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["_DynamicStructReader", "5", "spawned"]


# --- Peers that misbehave -------------------------------------------------------------------

# Where the queue's two mutexes lie in its segment (layout version 2, docs/protocol.md).
MUTEX_OFFSETS = {"producer": 128, "consumer": 192}


def stop_while_holding(name: str, side: str) -> int:
    """A child that puts and gets large messages in a loop, stopped (as by a debugger or a
    frozen container) at an instant when it holds the queue's producer or consumer mutex.
    Returns its pid; the caller kills it."""
    pid = os.fork()
    if pid == 0:
        try:
            q = xproc.Queue.open(name)
            big = b"x" * (2 << 20)
            while True:
                q.put_bytes(big)
                q.get_bytes()
        finally:
            os._exit(0)
    fd = os.open(f"/dev/shm/xproc.{name}", os.O_RDONLY)
    try:
        for _ in range(2000):
            os.kill(pid, signal.SIGSTOP)
            os.waitpid(pid, os.WUNTRACED)
            if int.from_bytes(os.pread(fd, 4, MUTEX_OFFSETS[side]), "little") != 0:
                return pid
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.0005)
    finally:
        os.close(fd)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"never caught the child holding the {side} mutex")


@pytest.mark.parametrize("side", ["producer", "consumer"])
def test_a_stopped_mutex_holder_delays_calls_only_until_their_timeout(unique_name, side):
    q = xproc.Queue(name=unique_name)
    holder = stop_while_holding(unique_name, side)
    try:
        started = time.monotonic()
        with pytest.raises(queue.Full if side == "producer" else queue.Empty):
            if side == "producer":
                q.put("x", timeout=1)
            else:
                q.get(timeout=1)
        waited = time.monotonic() - started
        assert 0.9 <= waited < 10
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    q.put_bytes(b"after")  # the dead holder's mutex is taken over
    while q.get_bytes(timeout=5) != b"after":
        pass  # what the holder left in the queue


def test_ctrl_c_interrupts_a_put_stalled_by_a_stopped_mutex_holder(unique_name):
    xproc.Queue(name=unique_name)
    holder = stop_while_holding(unique_name, "producer")
    try:
        code = f"""
import time, xproc
q = xproc.Queue.open({unique_name!r})
print("blocking", flush=True)
try:
    q.put("x")
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
"""
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=python_env())
        assert child.stdout.readline().strip() == "blocking"
        time.sleep(0.3)  # well inside the put
        pressed = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=10)
        word, caught = out.split()
        assert word == "interrupted"
        assert float(caught) - pressed < 1.0  # (the put looks for signals every 50 ms)
        assert child.returncode == 0
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)


def test_a_name_planted_by_another_user_raises_permission_error(unique_name):
    path = f"/dev/shm/xproc.{unique_name}"
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            os.fchmod(fd, 0o666)
            os.write(fd, b"bait" * 4096)
            os._exit(0)
        finally:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0, "could not plant the file as uid 65534 (needs root)"
    with open(path, "rb") as f:
        before = f.read()
    with pytest.raises(PermissionError, match="uid 65534"):
        xproc.Queue(name=unique_name)
    with pytest.raises(PermissionError):
        xproc.Queue.open(unique_name)
    with open(path, "rb") as f:
        assert f.read() == before  # nothing was written into it
    os.unlink(path)


def test_a_queue_shared_on_purpose_opens_with_the_same_declaration(unique_name):
    q = xproc.Queue(name=unique_name, mode=0o660)
    assert os.stat(f"/dev/shm/xproc.{unique_name}").st_mode & 0o777 == 0o660
    with pytest.raises(PermissionError):
        xproc.Queue.open(unique_name)  # by default only a segment nobody else can reach
    other = xproc.Queue.open(unique_name, mode=0o660)
    again = pickle.loads(pickle.dumps(other))  # how a spawned child receives it
    q.put("shared")
    assert again.get(timeout=5) == "shared"
    with pytest.raises(PermissionError):
        xproc.Queue.open(unique_name, mode=0o660, owner=65534)
