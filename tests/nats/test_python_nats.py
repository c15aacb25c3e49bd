"""xproc.nats from Python against real nats-server processes (conftest.py's fixtures): the
Queue's multiprocessing semantics, at-least-once redelivery, the Dict's atomic operations
between processes, login and connection errors, Ctrl-C."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import sys
import time
import uuid

import pytest

from xproc import nats

from nats_cluster import NatsCluster, free_port

# How much longer than asked a timed wait may take on a loaded machine.
SLACK = 5.0

spawn = multiprocessing.get_context("spawn")


def unique(prefix: str = "q") -> str:
    """A queue or dict name no other test (or earlier run) uses."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def python_env() -> dict:
    """The environment of a fresh interpreter that imports what this one does."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


# ---- Queue -----------------------------------------------------------------------------------


VALUES = [
    0, -1, 2**63 - 1, -(2**63), 2**100, -(2**200), 1.5, -0.25, float("inf"),
    "text", "ünïcødé", "", b"bytes", b"", b"\x00" * 100_000, [1, [2, "x"]], [], (1, "two"),
    {"a": 1, "b": [None, True]}, {1: "int key", (1, 2): "tuple key"}, None, True, False,
]


def test_put_then_get_round_trips_varied_values(nats_server):
    with nats.Queue(unique(), nats_server.urls) as q:
        for value in VALUES:
            q.put(value)
        for value in VALUES:
            got = q.get(timeout=10)
            q.task_done()
            assert got == value and type(got) is type(value), (got, value)


def test_put_then_get_round_trips_numpy_arrays(nats_server):
    np = pytest.importorskip("numpy")
    arrays = [np.arange(12, dtype=np.float64).reshape(3, 4), np.array([1, -2, 3], dtype=np.int16),
              np.zeros(0, dtype=np.uint8)]
    with nats.Queue(unique(), nats_server.urls) as q:
        for array in arrays:
            q.put(array)
        for array in arrays:
            got = np.asarray(q.get(timeout=10))
            q.task_done()
            assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)


def test_get_returns_messages_in_put_order(nats_server):
    with nats.Queue(unique(), nats_server.urls) as q:
        for i in range(100):
            q.put(i)
        assert q.qsize() == 100
        got = []
        for _ in range(100):
            got.append(q.get(timeout=10))
            q.task_done()
        assert got == list(range(100))
        assert q.empty()


def test_join_returns_once_every_message_is_done(nats_server):
    with nats.Queue(unique(), nats_server.urls) as q:
        for i in range(3):
            q.put(i)
        with pytest.raises(TimeoutError):
            q.join(timeout=0.3)
        for _ in range(3):
            q.get(timeout=10)
        assert q.qsize() == 3  # got, not acknowledged: still held
        with pytest.raises(TimeoutError):
            q.join(timeout=0.3)
        for _ in range(3):
            q.task_done()
        q.join(timeout=10)
        assert q.qsize() == 0


def test_task_done_called_too_many_times_raises_value_error(nats_server):
    with nats.Queue(unique(), nats_server.urls) as q:
        q.put("x")
        q.get(timeout=10)
        q.task_done()
        with pytest.raises(ValueError):
            q.task_done()


def test_get_on_empty_raises_empty_within_timeout(nats_server):
    with nats.Queue(unique(), nats_server.urls) as q:
        with pytest.raises(queue.Empty):
            q.get_nowait()
        start = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.5)
        elapsed = time.monotonic() - start
        assert 0.4 <= elapsed < 0.5 + SLACK
        with pytest.raises(queue.Empty):
            q.get(timeout=-1)  # a negative timeout counts as 0, as multiprocessing's


def test_put_on_full_raises_full(nats_server):
    with nats.Queue(unique(), nats_server.urls, maxsize=2) as q:
        assert q.maxsize == 2 and not q.full()
        q.put(1)
        q.put_nowait(2)
        assert q.full()
        with pytest.raises(queue.Full):
            q.put_nowait(3)
        start = time.monotonic()
        with pytest.raises(queue.Full):
            q.put(3, timeout=0.5)
        assert time.monotonic() - start < 0.5 + SLACK
        assert q.get(timeout=10) == 1
        q.task_done()  # acknowledged: room again
        q.put(3, timeout=10)
        assert [q.get(timeout=10), q.get(timeout=10)] == [2, 3]


def test_closed_queue_refuses_put_and_get(nats_server):
    q = nats.Queue(unique(), nats_server.urls)
    q.close()
    assert q.closed
    with pytest.raises(ValueError):
        q.put(1)
    with pytest.raises(ValueError):
        q.get_nowait()


def test_close_delivers_unacknowledged_messages_again_at_once(nats_server):
    name = unique()
    first = nats.Queue(name, nats_server.urls)
    second = nats.Queue(name, nats_server.urls)
    first.put("job")
    assert first.get(timeout=10) == "job"
    first.close()
    assert second.get(timeout=SLACK) == "job"  # well before ack_wait (30 s)
    second.task_done()
    second.join(timeout=10)


def test_unacknowledged_message_is_delivered_again_after_ack_wait(nats_server):
    name = unique()
    first = nats.Queue(name, nats_server.urls, ack_wait=3.0)
    second = nats.Queue(name, nats_server.urls, ack_wait=3.0)
    first.put("job")
    assert first.get(timeout=10) == "job"
    with pytest.raises(queue.Empty):
        second.get_nowait()  # delivered to `first`, which may still be working on it
    assert second.get(timeout=3.0 + 2 * SLACK) == "job"
    second.task_done()
    second.join(timeout=10)


GET_AND_HANG = """
import sys, time
from xproc import nats
q = nats.Queue(sys.argv[1], sys.argv[2], ack_wait=2.0)
print(q.get(timeout=10), flush=True)
time.sleep(60)
"""


def test_message_of_a_killed_getter_is_delivered_again(nats_server):
    name = unique()
    q = nats.Queue(name, nats_server.urls, ack_wait=2.0)
    q.put("job")
    child = subprocess.Popen([sys.executable, "-c", GET_AND_HANG, name, nats_server.urls[0]],
                             stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        assert child.stdout.readline().strip() == "job"
    finally:
        child.kill()
        child.wait()
    assert q.get(timeout=2.0 + 2 * SLACK) == "job"
    q.task_done()


def test_acknowledge_on_get_never_delivers_again(nats_server):
    name = unique()
    q = nats.Queue(name, nats_server.urls, ack_wait=1.0, acknowledge="get")
    q.put("once")
    assert q.get(timeout=10) == "once"
    assert q.qsize() == 0
    q.task_done()  # nothing to do: the get acknowledged
    other = nats.Queue(name, nats_server.urls, ack_wait=1.0, acknowledge="get")
    with pytest.raises(queue.Empty):
        other.get(timeout=2.0)  # past ack_wait
    q.join(timeout=10)


def test_invalid_acknowledge_raises_value_error(nats_server):
    with pytest.raises(ValueError):
        nats.Queue(unique(), nats_server.urls, acknowledge="never")


def take_until_empty(q: nats.Queue, results) -> None:
    got = []
    while True:
        try:
            got.append(q.get(timeout=3))
        except queue.Empty:
            break
        q.task_done()
    results.put(got)


def test_two_processes_share_the_work_with_no_message_got_twice(nats_server):
    q = nats.Queue(unique(), nats_server.urls)
    for i in range(300):
        q.put(i)
    results = spawn.Queue()
    workers = [spawn.Process(target=take_until_empty, args=(q, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    everything = got[0] + got[1]
    assert sorted(everything) == list(range(300))  # each once
    q.join(timeout=10)


def test_queue_pickles_as_its_name_and_connection(nats_server):
    q = nats.Queue(unique(), nats_server.urls, maxsize=5, ack_wait=7.0)
    copy = pickle.loads(pickle.dumps(q))
    assert (copy.name, copy.maxsize, copy.connection.servers) == (q.name, 5, nats_server.urls)
    q.put("across")
    assert copy.get(timeout=10) == "across"
    copy.task_done()


def test_replicated_queue_and_dict_work_on_a_cluster(nats_cluster):
    connection = nats.Connection(nats_cluster.urls)
    q = nats.Queue(unique(), connection=connection, replicas=3)
    q.put({"replicated": True})
    assert q.get(timeout=10) == {"replicated": True}
    q.task_done()
    d = nats.Dict(unique("d"), connection=connection, replicas=3)
    assert d.increment("n", 5) == 5


# ---- Dict ------------------------------------------------------------------------------------


def test_dict_sets_gets_and_deletes(nats_server):
    d = nats.Dict(unique("d"), nats_server.urls)
    assert len(d) == 0 and list(d) == [] and "a" not in d
    d["a"] = 1
    d["b.c"] = {"nested": [1, 2]}
    d["none"] = None
    assert d["a"] == 1 and d["b.c"] == {"nested": [1, 2]} and d["none"] is None
    assert "a" in d and "none" in d
    assert len(d) == 3
    assert sorted(d) == sorted(d.keys()) == ["a", "b.c", "none"]
    assert sorted(d.items()) == [("a", 1), ("b.c", {"nested": [1, 2]}), ("none", None)]
    assert d.get("missing") is None and d.get("missing", 7) == 7 and d.get("none", 7) is None
    del d["a"]
    assert "a" not in d and len(d) == 2
    with pytest.raises(KeyError):
        d["a"]
    with pytest.raises(KeyError):
        del d["a"]
    assert d.setdefault("s", "first") == "first" and d.setdefault("s", "second") == "first"
    assert d.pop("s") == "first" and "s" not in d


def test_dict_entry_and_compare_and_set(nats_server):
    d = nats.Dict(unique("d"), nats_server.urls)
    assert d.entry("k") is None
    assert d.compare_and_set("k", "made", 0)
    assert not d.compare_and_set("k", "again", 0)  # present now
    value, revision = d.entry("k")
    assert value == "made" and revision > 0
    assert d.compare_and_set("k", "changed", revision)
    assert not d.compare_and_set("k", "stale", revision)  # another write came first
    assert d["k"] == "changed"
    assert d.entry("k")[1] > revision


def test_dict_keys_must_be_str_of_the_nats_alphabet(nats_server):
    d = nats.Dict(unique("d"), nats_server.urls)
    with pytest.raises(TypeError):
        d[1] = "x"
    with pytest.raises(TypeError):
        d.get(b"bytes")
    for bad in ["has space", "star*", ".leading", "trailing.", ""]:
        with pytest.raises(ValueError):
            d[bad] = "x"


def test_dict_increment_on_a_non_int_raises_type_error(nats_server):
    d = nats.Dict(unique("d"), nats_server.urls)
    d["text"] = "not a number"
    with pytest.raises(TypeError):
        d.increment("text")


def increment_many(d: nats.Dict, times: int) -> None:
    for _ in range(times):
        d.increment("total")
        d.increment(f"per-{os.getpid()}")


def test_dict_increment_from_four_processes_is_exact(nats_server):
    d = nats.Dict(unique("d"), nats_server.urls)
    workers = [spawn.Process(target=increment_many, args=(d, 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert d["total"] == 200
    assert sorted(d) == sorted(["total"] + [f"per-{w.pid}" for w in workers])
    assert all(d[f"per-{w.pid}"] == 50 for w in workers)


# ---- Connections -----------------------------------------------------------------------------


def test_queue_and_dict_share_one_connection(nats_server):
    connection = nats.Connection(nats_server.urls)
    q = nats.Queue(unique(), connection=connection)
    d = nats.Dict(unique("d"), connection=connection)
    assert q.connection is connection and d.connection is connection
    q.put(1)
    d["k"] = q.get(timeout=10)
    q.task_done()
    assert d["k"] == 1
    with pytest.raises(ValueError):
        nats.Queue(unique(), nats_server.urls, connection=connection)
    with pytest.raises(ValueError):
        nats.Dict(unique("d"), connection=connection, user="someone")


def test_wrong_credentials_raise_authentication_error(tmp_path):
    with NatsCluster(tmp_path / "auth", size=1, users={"alice": "secret"}) as server:
        with pytest.raises(multiprocessing.AuthenticationError):
            nats.Queue(unique(), server.urls, user="alice", password="wrong")
        with pytest.raises(multiprocessing.AuthenticationError):
            nats.Connection(server.urls)  # none at all
        with nats.Queue(unique(), server.urls, user="alice", password="secret") as q:
            q.put("let in")
            assert q.get(timeout=10) == "let in"


def test_unreachable_server_raises_connection_error_within_timeout():
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        nats.Queue(unique(), url, connect_timeout=1.0)
    assert time.monotonic() - start < 1.0 + SLACK


def test_tls_checks_the_servers_certificate(tmp_path):
    # Certificates made for this test (tests/support/make_certificates.sh): the server's for
    # "localhost" signed by one CA; a client trusting another CA must be refused.
    certificates = tmp_path / "certificates"
    script = os.path.join(os.path.dirname(__file__), "..", "support", "make_certificates.sh")
    subprocess.run(["sh", script, str(certificates)], check=True)
    tls = (str(certificates / "server.pem"), str(certificates / "server.key"))
    with NatsCluster(tmp_path / "tls", size=1, tls=tls) as server:
        url = f"tls://localhost:{server.client_ports[0]}"
        with nats.Queue(unique(), url, ca=str(certificates / "ca.pem")) as q:
            q.put({"over": "tls"})
            assert q.get(timeout=10) == {"over": "tls"}
            q.task_done()
        start = time.monotonic()
        with pytest.raises(ConnectionError):
            nats.Queue(unique(), url, ca=str(certificates / "other.pem"), connect_timeout=1.0)
        assert time.monotonic() - start < 1.0 + SLACK
        with pytest.raises(ConnectionError):
            nats.Queue(unique(), f"nats://localhost:{server.client_ports[0]}", connect_timeout=1.0)


BLOCK_IN_GET = """
import sys
from xproc import nats
q = nats.Queue(sys.argv[1], sys.argv[2])
print("blocking", flush=True)
try:
    q.get()
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def interrupt_when_blocking(child: subprocess.Popen) -> str:
    """Sends SIGINT to `child` once it says "blocking" and is into its wait; what it printed
    after that. The child is killed if it does not end."""
    try:
        assert child.stdout.readline().strip() == "blocking"
        time.sleep(0.5)  # into the wait
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=SLACK)
        return out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ctrl_c_interrupts_a_blocked_get(nats_server):
    child = subprocess.Popen([sys.executable, "-c", BLOCK_IN_GET, unique(), nats_server.urls[0]],
                             stdout=subprocess.PIPE, text=True, env=python_env())
    assert interrupt_when_blocking(child).strip() == "interrupted"
    assert child.returncode == 0


BLOCK_IN_DICT_LOOKUP = """
import sys, time
from xproc import nats
d = nats.Dict(sys.argv[1], sys.argv[2])
d["k"] = 1
print("ready", flush=True)
sys.stdin.readline()  # the server is paused now
print("blocking", flush=True)
start = time.monotonic()
try:
    d["k"]
except KeyboardInterrupt:
    print("interrupted after %.2f s" % (time.monotonic() - start), flush=True)
"""


def test_ctrl_c_interrupts_a_dict_lookup_on_a_server_that_does_not_answer(nats_server):
    # Unanswered, the lookup would wait for the request timeout (5 s) and raise TimeoutError.
    name = unique("d")
    child = subprocess.Popen([sys.executable, "-c", BLOCK_IN_DICT_LOOKUP, name, nats_server.urls[0]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=python_env())
    assert child.stdout.readline().strip() == "ready"
    with nats_server.paused(0):
        child.stdin.write("go\n")
        child.stdin.flush()
        out = interrupt_when_blocking(child)
    assert out.startswith("interrupted after"), out
    assert float(out.split()[2]) < 4.0, out
    assert child.returncode == 0
    assert nats.Dict(name, nats_server.urls)["k"] == 1
