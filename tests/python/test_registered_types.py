"""BaseManager.register: Python types served by the Manager's server process, called from
this process, forked and spawned children, other programs that connect, and C++."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import pickle
import queue
import signal
import socket
import subprocess
import sys
import time

import pytest

import xproc
from xproc.managers import BaseManager, BaseProxy, RemoteError, SyncManager

EXAMPLES = pathlib.Path(__file__).parent / "registered"


class Counter:
    def __init__(self, start=0, *, step=1):
        self.value = start
        self.step = step

    def increment(self):
        self.value += self.step
        return self.value

    def get(self):
        return self.value

    def fail(self, kind):
        if kind == "value":
            raise ValueError("bad value")
        if kind == "zero":
            return 1 / 0
        if kind == "key":
            raise KeyError("k")
        raise QuotaExceeded(kind)

    def _private(self):
        return "private"


class QuotaExceeded(Exception):
    pass


class Maths:
    """What the C++ peer calls (examples/cross/peer.cpp, `registered`)."""

    def __init__(self, base=0):
        self.base = base

    def add(self, x, y):
        return self.base + x + y

    def mul(self, x, y):
        return x * y

    def fail(self, message):
        raise ValueError(message)


shared_queue = queue.Queue()


def get_shared_queue():
    return shared_queue


class CounterManager(BaseManager):
    pass


CounterManager.register("Counter", Counter)
CounterManager.register("Maths", Maths)
CounterManager.register("Queue", get_shared_queue)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_example(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=timeout)


# ---- the multiprocessing documentation's examples, only the import changed ----------


def test_customized_manager_example():
    result = run_example("customized_manager.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "56"]


def test_customized_proxies_example():
    result = run_example("customized_proxies.py")
    out = result.stdout
    assert "you called Foo.f()\nyou called Foo.g()\n" in out
    assert "you called Foo.g()\nyou called Foo._h()\n" in out
    assert "<0> <1> <4> <9> <16> <25> <36> <49> <64> <81>" in out
    assert "op.add(23, 45) = 68" in out
    assert "op.pow(2, 94) = 19807040628566084398385987584" in out  # an int past 64 bits
    assert "op._exposed_ = (" in out and "'pow'" in out
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("server", ["remote_queue_server.py", "local_worker_server.py"])
def test_remote_manager_examples(server):
    port = str(free_port())
    serving = subprocess.Popen([sys.executable, server, port], cwd=EXAMPLES, stdout=subprocess.PIPE, text=True)
    try:
        assert serving.stdout.readline().strip() == "serving"
        if server == "remote_queue_server.py":
            # A get that waits in the server while another client's put arrives.
            getter = subprocess.Popen([sys.executable, "remote_queue_client.py", port, "get"], cwd=EXAMPLES,
                                      stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            assert run_example("remote_queue_client.py", port, "put").returncode == 0
            assert getter.communicate(timeout=30)[0] == "hello\n"
        else:
            assert run_example("remote_queue_client.py", port, "get").stdout == "local hello\n"
    finally:
        serving.send_signal(signal.SIGINT)  # serve_forever ends on Ctrl-C, exit status 0
        assert serving.wait(timeout=30) == 0


# ---- the API ------------------------------------------------------------------------


@pytest.fixture
def manager():
    with CounterManager() as started:
        yield started


def test_constructor_arguments_and_exposed_methods(manager):
    counter = manager.Counter(10, step=5)
    assert counter.increment() == 15
    assert counter.get() == 15
    assert sorted(counter._exposed_) == ["fail", "get", "increment"]
    assert not hasattr(counter, "_private")
    assert not hasattr(counter, "call")  # the wire interface is not the object's
    assert "AutoProxy[Counter]" in repr(counter)
    assert str(counter).startswith("<test_registered_types.Counter object")


def test_errors_keep_their_type(manager):
    counter = manager.Counter()
    with pytest.raises(ValueError, match="bad value"):
        counter.fail("value")
    with pytest.raises(ZeroDivisionError):
        counter.fail("zero")
    with pytest.raises(KeyError):
        counter.fail("key")
    with pytest.raises(RemoteError, match="test_registered_types.QuotaExceeded") as raised:
        counter.fail("quota")
    assert "Traceback" in str(raised.value)
    assert isinstance(raised.value, multiprocessing.managers.RemoteError)
    with pytest.raises(RemoteError, match="not in exposed"):  # as multiprocessing's server answers
        counter._callmethod("_private")
    with pytest.raises(TypeError):
        manager.Counter(1, 2, 3)  # the constructor's own error
    assert counter.increment() == 1  # and the object goes on


def test_a_waiting_method_does_not_stop_the_server(manager):
    shared = manager.Queue()
    other = manager.Queue()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        shared.get(timeout=0.3)  # waits in the server, answered as queue.Empty
    assert time.monotonic() - started >= 0.25
    other.put("x")  # another proxy, served meanwhile by the same server
    assert shared.get(timeout=5) == "x"  # the same queue.Queue: the callable returns it each time


def _child_increments(counter, times, done):
    for _ in range(times):
        counter.increment()
    done.put(os.getpid())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_proxies_in_children(manager, method):
    context = multiprocessing.get_context(method)
    counter = manager.Counter()
    done = context.Queue()
    children = [context.Process(target=_child_increments, args=(counter, 50, done)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    assert counter.get() == 150


def test_proxies_pickle_with_their_class(manager):
    counter = manager.Counter(3)
    copy = pickle.loads(pickle.dumps(counter))
    assert type(copy) is type(counter)
    assert copy.increment() == 4 and counter.get() == 4


def test_connect_from_another_manager_object(manager):
    class Client(BaseManager):
        pass

    Client.register("Counter")  # no callable: the server has it
    client = Client(address=manager.address, authkey=manager.authkey)
    client.connect()
    counter = client.Counter(7)
    assert counter.increment() == 8


def test_syncmanager_subclass_serves_both(tmp_path):
    class Mine(SyncManager):
        pass

    Mine.register("Counter", Counter)
    with Mine() as manager:
        shared = manager.dict()
        counter = manager.Counter()
        shared["n"] = counter.increment()
        assert shared.copy() == {"n": 1}
    assert "Counter" not in SyncManager._registry  # the subclass's own table


def test_initializer_runs_in_the_server(tmp_path):
    marker = tmp_path / "initialized"
    manager = CounterManager()
    manager.start(initializer=marker.write_text, initargs=(str(os.getpid()),))
    try:
        assert marker.read_text() == str(os.getpid())
        assert manager.pid != os.getpid()
    finally:
        manager.shutdown()


def test_shutdown_stops_the_server_and_removes_its_socket():
    manager = CounterManager()
    manager.start()
    counter = manager.Counter()
    pid, address = manager.pid, manager.address
    manager.shutdown()
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)
    assert not os.path.exists(os.path.dirname(address))
    with pytest.raises(ConnectionError):
        counter.get()


def test_a_server_that_cannot_bind_says_why(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        manager = CounterManager(address=blocker.getsockname(), authkey=b"key")
        with pytest.raises(OSError):
            manager.start()
    finally:
        blocker.close()


def test_hostile_calls_fail_alone(manager):
    counter = manager.Counter()
    remote = counter._remote
    with pytest.raises(TypeError, match="keyword argument names must be text"):
        remote.call("call", "increment", (), {1: 2})
    with pytest.raises(RuntimeError, match="NotExposed"):
        remote.call("call", "__class__", (), {})
    with pytest.raises(KeyError):
        manager._started().make("user", "", "NoSuchType", (), {})
    assert counter.increment() == 1


class IteratorProxy(BaseProxy):
    _exposed_ = ("__next__",)

    def __iter__(self):
        return self

    def __next__(self):
        return self._callmethod("__next__")


class ListManager(BaseManager):
    pass


ListManager.register("List", list, exposed=("append", "__iter__", "__len__"), method_to_typeid={"__iter__": "Iterator"})
ListManager.register("Iterator", proxytype=IteratorProxy, create_method=False)


def _child_iterates(shared_list, out):
    out.put(list(iter(shared_list._callmethod("__iter__"))))


def test_method_to_typeid_results_are_shared_objects():
    with ListManager() as manager:
        shared = manager.List([1, 2])
        shared.append(3)
        iterator = shared.__iter__()
        assert type(iterator) is IteratorProxy
        assert next(iterator) == 1
        assert list(iterator) == [2, 3]
        # In a forked child, from a proxy it inherited.
        out = multiprocessing.get_context("fork").Queue()
        child = multiprocessing.get_context("fork").Process(target=_child_iterates, args=(shared, out))
        child.start()
        assert out.get(timeout=30) == [1, 2, 3]
        child.join(30)
        # A claim works once, and only for its own type.
        result, shared_as = shared._remote.call("call", "__iter__", (), {})
        assert shared_as == "Iterator"
        with pytest.raises(KeyError):
            manager._started().make("user", "", "List", (), {"#claim": result})
        manager._started().make("user", "", "Iterator", (), {"#claim": result})
        with pytest.raises(KeyError):
            manager._started().make("user", "", "Iterator", (), {"#claim": result})
        with pytest.raises(KeyError):
            manager._started().make("user", "", "Iterator", (), {"#claim": b"made up"})


def test_cpp_calls_a_python_registered_type(peer):
    with CounterManager(authkey=b"cross-language key") as manager:
        result = subprocess.run([str(peer), "registered", manager._started().address, "cross-language key"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "C++ add(4, 3) = 17",
        "C++ mul(y=8, x=7) = 56",
        "C++ exposed: add fail mul",
        "C++ caught ValueError: boom",
    ]
