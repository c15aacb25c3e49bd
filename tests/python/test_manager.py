"""xproc.Manager against multiprocessing.Manager's semantics, across processes."""

from __future__ import annotations

import collections.abc
import multiprocessing as mp
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

import xproc
from conftest import BUILD_DIR, SOURCE_DIR, interrupt_python, run_python


@pytest.fixture(scope="module")
def manager():
    with xproc.Manager() as m:
        yield m


def add_many(d, key, times):
    for _ in range(times):
        d.increment(key)


def append_ids(shared, i):
    shared.append(i)


def hold_lock_forever(lock, ready):
    lock.acquire()
    ready.set()
    time.sleep(60)


def test_dict_is_a_mutable_mapping(manager):
    d = manager.dict({"a": 1}, b=2)
    assert isinstance(d, collections.abc.MutableMapping)
    d["c"] = [3]
    d[(1, 2)] = None
    assert d["c"] == [3] and d[(1, 2)] is None
    assert len(d) == 4 and "a" in d and "z" not in d
    assert sorted(map(str, d.keys())) == ["(1, 2)", "a", "b", "c"]
    assert d.copy() == {"a": 1, "b": 2, "c": [3], (1, 2): None}
    assert d.pop("a") == 1 and d.pop("a", "gone") == "gone"
    assert d.setdefault("s", 5) == 5 and d.get("nope") is None
    d.update({"u": 1}, v=2)
    assert d.popitem() == ("v", 2)
    with pytest.raises(KeyError) as error:
        d["missing"]
    assert error.value.args == ("missing",)
    with pytest.raises(KeyError):
        del d["missing"]
    del d[(1, 2)]
    assert str(d) == repr(d.copy())  # print(proxy) shows the remote dict, as in multiprocessing
    d.clear()
    assert len(d) == 0


def test_dict_atomic_extensions(manager):
    d = manager.dict()
    assert d.increment("n") == 1 and d.increment("n", 5) == 6
    assert d.compare_and_set("n", 6, 7) == (True, 7)
    assert d.compare_and_set("n", 6, 8) == (False, 7)
    assert d.compare_and_set("new", xproc.managers.MISSING, 1) == (True, 1)
    d.set_many({"x": 1, "y": 2})
    assert d.get_many(["x", "y", "z"], default=-1) == [1, 2, -1]


def test_list_is_a_mutable_sequence(manager):
    lst = manager.list(range(5))
    assert isinstance(lst, collections.abc.MutableSequence)
    lst.append(5)
    lst.extend([6, 7])
    lst.insert(0, -1)
    assert lst[0] == -1 and lst[-1] == 7 and lst[1:3] == [0, 1]
    lst[1:3] = ["a", "b", "c"]
    del lst[0]
    assert lst.copy() == ["a", "b", "c", 2, 3, 4, 5, 6, 7]
    assert lst.pop() == 7 and lst.index("b") == 1 and lst.count(3) == 1
    lst.remove("a")
    with pytest.raises(ValueError):
        lst.remove("zzz")
    with pytest.raises(IndexError):
        lst[100]
    lst += [8]
    assert lst == ["b", "c", 2, 3, 4, 5, 6, 8]
    numbers = manager.list([3, 1, 2])
    numbers.sort(reverse=True)
    assert list(numbers) == [3, 2, 1]
    with pytest.raises(TypeError):
        manager.list(["a", 1]).sort()
    assert str(numbers) == "[3, 2, 1]"


def test_namespace_value_and_array(manager):
    ns = manager.Namespace(x=1)
    ns.y = "two"
    assert (ns.x, ns.y) == (1, "two")
    with pytest.raises(AttributeError):
        ns.missing
    del ns.x
    with pytest.raises(AttributeError):
        ns.x
    v = manager.Value("i", 5)
    v.value += 1
    assert v.value == 6 and v.increment(4) == 10
    a = manager.Array("d", [1, 2, 3])
    a[0] = 9.5
    assert a[:] == [9.5, 2.0, 3.0] and len(a) == 3
    with pytest.raises(IndexError):
        a[3] = 1


def test_queue_proxy(manager):
    q = manager.Queue(1)
    q.put({"k": [1]})
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.05)
    assert q.get() == {"k": [1]}
    with pytest.raises(queue.Empty):
        q.get_nowait()
    jq = manager.JoinableQueue()
    jq.put(1)
    jq.get()
    jq.task_done()
    assert jq.join(timeout=5)


def test_synchronization_primitives(manager):
    lock = manager.Lock()
    with lock:
        assert not lock.acquire(False)
    with pytest.raises(RuntimeError):
        lock.release()
    rlock = manager.RLock()
    with rlock:
        with rlock:
            pass
    sem = manager.BoundedSemaphore(2)
    assert sem.acquire() and sem.acquire() and not sem.acquire(timeout=0.05)
    sem.release()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    event = manager.Event()
    assert not event.wait(0.05)
    event.set()
    assert event.wait() and event.is_set()
    barrier = manager.Barrier(1)
    assert barrier.wait() == 0 and barrier.parties == 1
    condition = manager.Condition()
    state = manager.dict(ready=False)

    def notifier():
        time.sleep(0.1)
        with condition:
            state["ready"] = True
            condition.notify_all()

    thread = threading.Thread(target=notifier)
    thread.start()
    with condition:
        assert condition.wait_for(lambda: state["ready"], timeout=10)
    thread.join()


def test_every_operation_of_the_schema_is_reachable_by_its_python_name(manager):
    """Operations the proxy classes do not spell out are called by their schema names in
    snake case, with nothing written for them in the package or the extension."""
    shared = manager.list([1, 2])
    shared.multiply(2)  # SharedList.multiply
    assert shared.copy() == [1, 2, 1, 2]
    d = manager.dict(a=1)
    assert d.get_item("a") == 1  # Dict.getItem
    assert d._call("getMany", ["a", "b"]) == ([1, None], [True, False])
    with pytest.raises(AttributeError):
        d.no_such_operation
    with pytest.raises(AttributeError):
        d._call("noSuchOperation")
    with pytest.raises(TypeError):
        d._call("getItem", "a", "too many")


def test_timeouts_follow_queue_and_threading(manager):
    q = manager.Queue()
    with pytest.raises(ValueError):
        q.get(timeout=-1)  # as queue.Queue
    event = manager.Event()
    started = time.monotonic()
    assert not event.wait(-1)  # as threading.Event: no wait at all
    assert time.monotonic() - started < 5
    lock = manager.Lock()
    with pytest.raises(ValueError):
        lock.acquire(False, 1)  # as threading.Lock
    with pytest.raises(ValueError):
        lock.acquire(timeout=-5)
    assert lock.acquire(timeout=-1)  # -1: forever, and it is free
    lock.release()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_increment_exactly(manager, method):
    d = manager.dict()
    ctx = mp.get_context(method)
    workers = [ctx.Process(target=add_many, args=(d, "n", 100)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert [w.exitcode for w in workers] == [0] * 4
    assert d["n"] == 400


def test_the_lock_of_a_killed_holder_comes_free(manager):
    lock = manager.Lock()
    ready = manager.Event()
    holder = mp.get_context("fork").Process(target=hold_lock_forever, args=(lock, ready))
    holder.start()
    assert ready.wait(20)
    assert not lock.acquire(timeout=0.1)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert lock.acquire(timeout=10)
    lock.release()


def test_connect_from_elsewhere_by_address_and_named_objects(manager):
    shared = manager.dict(name="shared-for-connect")
    shared["from"] = "parent"
    other = xproc.connect(manager.address, manager.authkey)
    assert other.dict(name="shared-for-connect")["from"] == "parent"
    assert "shared-for-connect" in other.names()
    with pytest.raises(mp.AuthenticationError):
        xproc.connect(manager.address, b"not the key")


def test_unsupported_value_is_type_error_at_the_call(manager):
    d = manager.dict()
    with pytest.raises(TypeError, match="'object'"):
        d["k"] = object()
    d["k"] = 1
    assert d["k"] == 1


def test_after_shutdown_calls_fail_with_connection_error():
    with xproc.Manager() as m:
        d = m.dict()
        d["x"] = 1
    with pytest.raises((ConnectionError, EOFError, OSError)):
        d["x"]


def test_ctrl_c_interrupts_a_blocked_proxy_call():
    code = (
        "import xproc\n"
        "with xproc.Manager() as m:\n"
        "    q = m.Queue()\n"
        "    print('blocking', flush=True)\n"
        "    try:\n"
        "        q.get()\n"
        "    except KeyboardInterrupt:\n"
        "        q.put('still usable')\n"
        "        print('interrupted', q.get(), flush=True)\n"
    )
    result = interrupt_python(code, settle=0.3, timeout=20)
    assert result.stdout == "interrupted still usable"
    assert result.returncode == 0


def test_pycapnp_loaded_first_is_a_clear_error_not_a_crash():
    result = run_python("import capnp, xproc\ntry:\n    xproc.Manager()\nexcept RuntimeError as e:\n    print(e)")
    assert result.returncode == 0, result.stderr
    assert "Import xproc before capnp" in result.stdout


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """The certificates of tests/support/make_certificates.sh: a CA, a server certificate for
    localhost, and a CA the clients do not trust."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["sh", str(SOURCE_DIR / "tests" / "support" / "make_certificates.sh"), str(folder)], check=True)
    return folder


@pytest.fixture()
def tls_server(certificates, tmp_path):
    """`xproc serve` on tls:127.0.0.1 (a free port); yields (address as localhost, key)."""
    key = b"tls test key"
    key_file = tmp_path / "key"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    server = subprocess.Popen(
        [str(BUILD_DIR / "src" / "cli" / "xproc"), "serve", "--address", "tls:127.0.0.1:0",
         "--authkey-file", str(key_file), "--cert", str(certificates / "server.pem"),
         "--key", str(certificates / "server.key")],
        stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline().split()
    assert line[:2] == ["serving", "on"], line
    port = line[2].rsplit(":", 1)[1]
    yield f"tls:localhost:{port}", key
    server.kill()
    server.wait()


def read_shared(d, results):
    results.put(d["where"])


def test_connect_over_tls_checks_the_server_and_proxies_travel(tls_server, certificates):
    address, key = tls_server
    manager = xproc.connect(address, key, cafile=str(certificates / "ca.pem"))
    d = manager.dict()
    d["where"] = "over TLS"
    assert d["where"] == "over TLS"
    results = xproc.Queue()
    child = mp.get_context("spawn").Process(target=read_shared, args=(d, results))
    child.start()  # the proxy reconnects over TLS in the child, with the same checks
    assert results.get(timeout=60) == "over TLS"
    child.join()
    with pytest.raises(ConnectionError, match="TLS"):
        xproc.connect(address, key, cafile=str(certificates / "other.pem"))
    with pytest.raises(ConnectionError, match="TLS"):
        xproc.connect(address.replace("localhost", "127.0.0.1"), key, cafile=str(certificates / "ca.pem"))
    with pytest.raises(mp.AuthenticationError):
        xproc.connect(address, b"wrong", cafile=str(certificates / "ca.pem"))


def test_proxies_print_as_multiprocessing_s():
    with xproc.Manager() as manager:
        for make, typeid in [(manager.dict, "dict"), (manager.list, "list"), (manager.Namespace, "Namespace"),
                             (manager.Queue, "Queue"), (manager.JoinableQueue, "JoinableQueue"),
                             (manager.Lock, "Lock"), (manager.RLock, "RLock"), (manager.Semaphore, "Semaphore"),
                             (manager.BoundedSemaphore, "BoundedSemaphore"), (manager.Event, "Event"),
                             (manager.Condition, "Condition"), (lambda: manager.Barrier(2), "Barrier"),
                             (lambda: manager.Value("i", 1), "Value"), (lambda: manager.Array("i", [1]), "Array")]:
            proxy = make()
            assert re.fullmatch(rf"<\w+Proxy object, typeid '{typeid}' at 0x[0-9a-f]+>", repr(proxy)), repr(proxy)


def test_list_iteration_reads_the_list_as_it_goes():
    with xproc.Manager() as manager:
        items = manager.list(range(1000))  # more than one slice
        it = iter(items)
        items[0] = "changed"
        items.append("appended before the end was read")
        assert list(it) == ["changed", *range(1, 1000), "appended before the end was read"]
        assert list(it) == []


def test_dict_iteration_raises_when_the_dict_changed_size_as_python_s():
    with xproc.Manager() as manager:
        d = manager.dict({i: chr(i) for i in range(65, 70)})
        it = iter(d)
        assert list(it) == list(range(65, 70))
        assert list(it) == []
        it = iter(d)
        d.clear()
        with pytest.raises(RuntimeError, match="changed size"):
            next(it)
        d.update({1: 1, 2: 2})
        with pytest.raises(RuntimeError, match="changed size"):
            for key in d:
                del d[key]


def put_back_what_the_queue_brought(q, results):
    shared = q.get(timeout=30)
    shared["seen by"] = os.getpid()
    results.put(type(shared).__name__)


def test_a_proxy_in_a_container_comes_back_as_a_proxy_to_the_same_object(manager):
    inner = manager.dict(a=1)
    outer = manager.list([inner, [1, 2]])
    nested = manager.dict(d=inner, q=manager.Queue())
    assert isinstance(outer[0], xproc.managers.DictProxy)
    assert isinstance(outer[1], list)  # a plain list stays one
    outer[0]["b"] = 2
    assert inner == {"a": 1, "b": 2}
    nested["q"].put("item")  # the queue's only holder is the dict
    assert nested["q"].get(timeout=10) == "item"
    inner_id = inner._id
    del inner
    assert outer[0]["a"] == 1  # the list holds the dict now
    outer.clear()
    nested.clear()
    with pytest.raises(KeyError):  # and nothing holds it any more
        manager._started().attach(inner_id)
    locks = manager.list([manager.Lock(), manager.RLock(), manager.Event()])
    assert [type(p).__name__ for p in locks] == ["LockProxy", "RLockProxy", "EventProxy"]


def test_a_proxy_of_another_manager_is_refused_and_stores_nothing(manager):
    with xproc.Manager() as other:
        d = manager.dict()
        with pytest.raises(ValueError, match="another manager"):
            d["x"] = [other.dict()]
        assert len(d) == 0


def test_a_proxy_travels_through_a_queue_to_a_process_that_uses_its_manager(manager):
    shared = manager.dict()
    q, results = xproc.Queue(), xproc.Queue()
    child = mp.get_context("fork").Process(target=put_back_what_the_queue_brought, args=(q, results))
    child.start()
    q.put(shared)
    assert results.get(timeout=30) == "DictProxy"
    child.join()
    assert shared["seen by"] == child.pid


def test_a_proxy_from_a_manager_this_process_never_used_is_a_proxy_ref():
    ref = xproc.decode(xproc.encode(xproc.ProxyRef(0x1234, 7)))
    assert ref == xproc.ProxyRef(0x1234, 7)
    assert repr(ref) == "xproc.ProxyRef(manager=0x1234, id=7)"
    with xproc.Manager() as m:
        d = m.dict()
        found = xproc.decode(xproc.encode([d]))[0]
        assert isinstance(found, xproc.managers.DictProxy) and found._id == d._id
