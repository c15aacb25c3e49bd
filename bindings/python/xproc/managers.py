"""Manager, SyncManager and connect: ``multiprocessing.Manager`` over xproc's Cap'n Proto
RPC server.

``Manager()`` starts a server process and returns a started ``SyncManager`` whose
``dict()``, ``list()``, ``Namespace()``, ``Value()``, ``Array()``, ``Queue()``,
``JoinableQueue()``, ``Lock()``, ``RLock()``, ``Semaphore()``, ``BoundedSemaphore()``,
``Event()``, ``Condition()`` and ``Barrier()`` return proxies, as multiprocessing's do.
The server speaks plain Cap'n Proto RPC (schema/xproc/manager.capnp), so C++ proxies and
any other Cap'n Proto client reach the same objects; ``connect(address, authkey)``
attaches to a server started elsewhere (another program, ``xproc serve``, C++).

Beyond multiprocessing: every factory takes ``name=`` (get the object registered under
that name, or create it), and dict proxies have atomic ``increment``,
``compare_and_set``, ``get_many`` and ``set_many``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import threading
from collections.abc import MutableMapping, MutableSequence
from multiprocessing import current_process, util
from multiprocessing.context import get_spawning_popen
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import _object_server, _xproc
from ._proxy_refs import ProxyRef
from ._proxy_refs import remember as _remember_manager
from .connection import Address, _address_text, _address_value, _check_authkey

__all__ = ["Manager", "BaseManager", "SyncManager", "BaseProxy", "RemoteError", "connect", "MISSING", "ProxyRef"]


class _Missing:
    """The marker for "no such key" in compare_and_set."""

    def __repr__(self) -> str:
        return "xproc.MISSING"


MISSING = _Missing()

# How to reach a tls: address: (cafile, certfile, keyfile, server_hostname), as connect()
# was given them; unpickled proxies reconnect with the same.
_Tls = Tuple[str, str, str, str]
_NO_TLS: _Tls = ("", "", "", "")
_tls_by_address: Dict[str, _Tls] = {}

# Managers this process connected to in order to re-attach unpickled proxies, by
# (pid, address, authkey): a forked child must not reuse its parent's entry.
_attached: Dict[Tuple[int, str, bytes], "_xproc.Manager"] = {}
_attached_lock = threading.Lock()
atexit.register(_attached.clear)  # closed before the interpreter tears the extension down


def _manager_for(address: str, authkey: Optional[bytes], tls: Optional[_Tls] = None) -> "_xproc.Manager":
    key = authkey if authkey is not None else bytes(current_process().authkey)
    with _attached_lock:
        entry = (os.getpid(), address, key)
        if entry not in _attached:
            _attached[entry] = _xproc.Manager.connect(address, key, *(tls or _tls_by_address.get(address, _NO_TLS)))
        return _attached[entry]


def _rebuild_proxy(
    cls: type, address: str, authkey: Optional[bytes], object_id: int, tls: Optional[_Tls] = None
) -> "BaseProxy":
    if tls is not None:
        _tls_by_address.setdefault(address, tls)
    engine = _manager_for(address, authkey, tls)
    _remember_manager(engine, address, authkey)
    _, remote = engine.attach(object_id)
    return cls(remote, address, authkey)


class BaseProxy:
    """What every proxy shares: its remote object, and how it travels to other processes.

    A proxy pickles as its manager's address and the object's id (plus the authkey when
    the pickle goes to a process being spawned, as multiprocessing does); the receiving
    process connects as it unpickles it, and its proxy holds the object from then on.
    In a Value (a Manager container, a queue, a pipe) a proxy travels as its manager's
    instance number and the object's id, and comes back as a proxy in any process that
    uses that manager (else as a ProxyRef); a container holds the object while it holds
    the proxy.
    """

    _typeid = ""  # multiprocessing's name of it, as its proxies print
    _exposed_: Optional[Tuple[str, ...]] = None  # a registered type's methods its proxies call

    def __init__(self, remote: Any, address: str, authkey: Optional[bytes]) -> None:
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_address", address)
        object.__setattr__(self, "_authkey", authkey)
        # _call(method, *args, **kwargs) calls the object's `method` by its name in
        # schema/xproc/manager.capnp: the binding's own method, so that a call costs no
        # Python frame of its own.
        object.__setattr__(self, "_call", remote.call)
        # An object of a type registered with BaseManager.register (manager.capnp's Dynamic).
        object.__setattr__(self, "_registered", remote.kind == "user")

    def __reduce__(self) -> Any:
        authkey = self._authkey if get_spawning_popen() is not None else None
        tls = _tls_by_address.get(self._address)
        return (_rebuild_proxy, (type(self), self._address, authkey, self._remote.id, tls))

    def __str__(self) -> str:
        if self._registered:
            return self._callmethod("__str__")
        return repr(self._remote)  # the remote object's repr, as multiprocessing's proxies print

    def _callmethod(self, methodname: str, args: tuple = (), kwds: Optional[dict] = None) -> Any:
        """Calls the referent's method `methodname`, as multiprocessing's proxies do: for an
        object of a registered type, its Python method in the server process (the same
        exception class for a built-in one, else RemoteError); for a Manager object, its
        operation in manager.capnp by its Python name."""
        if not self._registered:
            return self._call(_schema_name(methodname), *args, **(kwds or {}))
        try:
            result, shared_as = self._call("call", methodname, args, kwds or {})
        except RuntimeError as error:
            raise _remote_exception(error) from None
        if shared_as:  # a method of method_to_typeid: the result is a new shared object
            return _claim_shared(shared_as, result, self._address, self._authkey)
        return result

    def _getvalue(self) -> Any:
        """A copy of the referent (it must be a Value: containers, numbers, text ...)."""
        return self._callmethod("#GETVALUE")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._typeid!r} at {id(self):#x}>"

    @property
    def _id(self) -> int:
        return self._remote.id

    @property
    def aio(self) -> Any:
        """This proxy's coroutine face, for asyncio: ``await d.aio.get(k)``, ``async with
        lock.aio``, ``await q.aio.get()``, many calls in flight on one connection (see
        xproc.async_proxies for what a cancelled call leaves)."""
        face = self.__dict__.get("_aio")
        if face is None:
            from .async_proxies import face_of

            face = face_of(self)
            object.__setattr__(self, "_aio", face)
        return face

    def _xproc_proxy_ref(self) -> Tuple[int, int]:
        """How a proxy travels in a Value: its manager's instance and the object's id."""
        return (self._remote.manager_instance, self._remote.id)

    def __getattr__(self, name: str) -> Any:
        """An operation of the object's interface that this class does not spell out is
        reachable by its Python name: ``d.get_many(keys)`` calls ``getMany``."""
        if name.startswith("_") or self._registered:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        method = _schema_name(name)
        if not self._remote.has_method(method):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return functools.partial(self._remote.call, method)


_remote_error: Optional[type] = None


def _remote_error_class() -> type:
    """xproc.managers.RemoteError: a method of a registered type raised an exception that is
    not one of Python's built-in ones (its module-qualified name and the server's
    traceback). A multiprocessing.managers.RemoteError, made at first use: that module
    imports `queue`, which the package must not import as it loads (a program may be
    called queue.py)."""
    global _remote_error
    if _remote_error is None:
        import multiprocessing.managers

        _remote_error = type("RemoteError", (multiprocessing.managers.RemoteError,), {
            "__module__": __name__, "__doc__": _remote_error_class.__doc__})
    return _remote_error


def __getattr__(name: str) -> Any:
    if name == "RemoteError":
        return _remote_error_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _remote_exception(error: RuntimeError) -> BaseException:
    """The exception a failed registered-type call stands for. Errors of xproc's table
    (KeyError, ValueError, queue.Empty ...) arrive as themselves; the rest arrive here as
    "manager: remote exception: <name>: <message>"."""
    text = str(error)
    for prefix in ("manager: ", "remote exception: "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    name, separator, message = text.partition(": ")
    if not separator:
        return error
    cls = getattr(__import__("builtins"), name, None) if name.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return cls(message) if message else cls()
    if "." in name:
        return _remote_error_class()(f"{name}: {message}")
    return error


def _schema_name(name: str) -> str:
    """A Python method name as manager.capnp spells it: get_many -> getMany."""
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


# multiprocessing's timeouts, as the server's threading and queue objects take them.
def _wait_timeout(timeout: Optional[float]) -> Optional[float]:
    """Event, Condition and Barrier waits: a negative timeout waits not at all."""
    return None if timeout is None else max(0.0, timeout)


def _acquire_timeout(blocking: bool, timeout: Optional[float]) -> Optional[float]:
    """Lock.acquire's rules: -1 (or None) waits forever; no timeout without blocking."""
    if timeout is None or timeout == -1:
        return None
    if not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


# Items a list iterator reads per call.
_ITERATION_CHUNK = 256


class _DictKeyIterator:
    """A dict proxy's keys, as Python's dict iterator: RuntimeError when the dict's size
    changed after iter(). The keys are read in one call at the first next(); the size is
    checked then and once more at the end."""

    __slots__ = ("_dict", "_size", "_keys", "_next")

    def __init__(self, proxy: "DictProxy") -> None:
        self._dict = proxy
        self._size = len(proxy)
        self._keys: Optional[List[Any]] = None
        self._next = 0

    def __iter__(self) -> "_DictKeyIterator":
        return self

    def __next__(self) -> Any:
        if self._keys is None:
            self._keys = self._dict.keys()
            self._check_size(len(self._keys))
        if self._next < len(self._keys):
            self._next += 1
            return self._keys[self._next - 1]
        if self._next == len(self._keys):
            self._next += 1  # exhausted: checked once, then StopIteration for good
            self._check_size(len(self._dict))
        raise StopIteration

    def _check_size(self, size: int) -> None:
        if size != self._size:
            self._next = len(self._keys or ()) + 1
            raise RuntimeError("dictionary changed size during iteration")


class DictProxy(BaseProxy, MutableMapping):
    """A dict living in the manager process."""

    _typeid = "dict"

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._call("getItem", key)
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._call("setItem", key, value)

    def __delitem__(self, key: Any) -> None:
        try:
            self._call("delItem", key)
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return self._call("contains", key)

    def __iter__(self) -> Iterator[Any]:
        return _DictKeyIterator(self)

    def __len__(self) -> int:
        return self._call("len")

    def keys(self) -> List[Any]:  # type: ignore[override]
        return self._call("keys")

    def values(self) -> List[Any]:  # type: ignore[override]
        return self._call("values")

    def items(self) -> List[Tuple[Any, Any]]:  # type: ignore[override]
        return self._call("items")

    def get(self, key: Any, default: Any = None) -> Any:
        return self._call("get", key, default)

    def pop(self, key: Any, default: Any = MISSING) -> Any:
        if default is MISSING:
            try:
                return self._call("pop", key)
            except KeyError:
                raise KeyError(key) from None
        return self._call("pop", key, default)

    def popitem(self) -> Tuple[Any, Any]:
        return self._call("popitem")

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._call("setdefault", key, default)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        self._call("update", dict(other, **kwargs))

    def clear(self) -> None:
        self._call("clear")

    def copy(self) -> Dict[Any, Any]:
        """A snapshot as a plain dict (one round trip)."""
        return self._call("copy")

    def increment(self, key: Any, delta: Any = 1) -> Any:
        """``d[key] = d.get(key, 0) + delta`` atomically; returns the new value."""
        return self._call("increment", key, delta)

    def compare_and_set(self, key: Any, expected: Any, value: Any) -> Tuple[bool, Any]:
        """Sets ``d[key] = value`` if ``d[key] == expected`` (``expected=MISSING``: if the key
        is absent), atomically. Returns (whether it did, the value there now or MISSING)."""
        missing = expected is MISSING
        swapped, current, present = self._call("compareAndSet", key, None if missing else expected, missing, value)
        return swapped, current if present else MISSING

    def get_many(self, keys: Iterable[Any], default: Any = None) -> List[Any]:
        """The values of many keys in one round trip (`default` for missing ones)."""
        values, present = self._call("getMany", list(keys))
        return [value if found else default for value, found in zip(values, present)]

    def set_many(self, items: Any) -> None:
        """Sets many keys in one round trip, atomically."""
        self._call("setMany", dict(items))


class _Sequence(BaseProxy):
    """Indexing and slicing, as the list and the array share them."""

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._call("getSlice", index)
        return self._call("getItem", index)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            self._call("setSlice", index, list(value))
        else:
            self._call("setItem", index, value)

    def __len__(self) -> int:
        return self._call("len")


class ListProxy(_Sequence, MutableSequence):
    """A list living in the manager process."""

    _typeid = "list"

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):
            self._call("delSlice", index)
        else:
            self._call("delItem", index)

    def __contains__(self, value: object) -> bool:
        return self._call("contains", value)

    def __iter__(self) -> Iterator[Any]:
        """Reads the list as it goes, a slice per call: what changes after iter() and before
        an item is read is seen (multiprocessing's iterator reads an item per call)."""
        start = 0
        while True:
            chunk = self[start : start + _ITERATION_CHUNK]
            if not chunk:
                return
            yield from chunk
            start += len(chunk)

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self.copy())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListProxy):
            other = other.copy()
        return isinstance(other, list) and self.copy() == other

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Iterable[Any]) -> List[Any]:
        return self.copy() + list(other)

    def __mul__(self, times: int) -> List[Any]:
        return self.copy() * times

    __rmul__ = __mul__

    def __iadd__(self, other: Iterable[Any]) -> "ListProxy":
        self._call("extend", list(other))
        return self

    def __imul__(self, times: int) -> "ListProxy":
        self._call("multiply", times)
        return self

    def insert(self, index: int, value: Any) -> None:
        self._call("insert", index, value)

    def append(self, value: Any) -> None:
        self._call("append", value)

    def extend(self, values: Iterable[Any]) -> None:
        self._call("extend", list(values))

    def pop(self, index: int = -1) -> Any:
        return self._call("pop", index)

    def remove(self, value: Any) -> None:
        self._call("remove", value)

    def index(self, value: Any, start: int = 0, stop: Optional[int] = None) -> int:
        if stop is None:
            return self._call("index", value, start)
        return self._call("index", value, start, stop)

    def count(self, value: Any) -> int:
        return self._call("count", value)

    def reverse(self) -> None:
        self._call("reverse")

    def sort(self, *, key: Optional[Callable[[Any], Any]] = None, reverse: bool = False) -> None:
        """Sorts the list in place on the server (``key`` cannot run there: TypeError; sort a copy()
        instead)."""
        if key is not None:
            raise TypeError("a key function cannot run in the manager process; sort a copy() instead")
        self._call("sort", reverse)

    def copy(self) -> List[Any]:
        """A snapshot as a plain list (one round trip)."""
        return self._call("copy")


class NamespaceProxy(BaseProxy):
    """A namespace living in the manager process: ``ns.x = 1`` in one process is
    ``ns.x`` in every other. Names starting with ``_`` stay local to the proxy."""

    _typeid = "Namespace"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._call("getAttr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._call("setAttr", name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
        else:
            self._call("delAttr", name)


class ValueProxy(BaseProxy):
    """manager.Value: ``.value`` (or ``get()``/``set()``) reads and writes it remotely."""

    _typeid = "Value"

    def get(self) -> Any:
        """The value (also ``.value``)."""
        return self._call("get")

    def set(self, value: Any) -> None:
        """Replaces the value (also ``.value = x``)."""
        self._call("set", value)

    value = property(get, set)

    @property
    def typecode(self) -> str:
        """The array module typecode the Value was made with ('i', 'd', ...)."""
        return self._call("typecode")

    def increment(self, delta: Any = 1) -> Any:
        """``value += delta`` atomically; returns the new value."""
        return self._call("increment", delta)


class ArrayProxy(_Sequence):
    """manager.Array: a fixed-length array of one typecode."""

    _typeid = "Array"

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])

    def tolist(self) -> List[Any]:
        """The items as a plain list (one round trip)."""
        return self[:]

    @property
    def typecode(self) -> str:
        """The array module typecode of the items ('i', 'd', ...)."""
        return self._call("typecode")


class QueueProxy(BaseProxy):
    """manager.Queue(): a queue living in the manager process. A negative timeout is a
    ValueError, as queue.Queue's."""

    _typeid = "Queue"

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Appends `obj`, waiting for room up to `timeout` seconds (None: no limit) when `block`;
        queue.Full when there is none."""
        self._call("put", obj, block, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Removes and returns the oldest item, waiting up to `timeout` seconds (None: no limit)
        when `block`; queue.Empty when there is none."""
        return self._call("get", block, timeout)

    def put_nowait(self, obj: Any) -> None:
        """put(obj, block=False)."""
        self._call("put", obj, False)

    def get_nowait(self) -> Any:
        """get(block=False)."""
        return self._call("get", False)

    def qsize(self) -> int:
        """The number of items in the queue now."""
        return self._call("qsize")

    def empty(self) -> bool:
        """Whether the queue holds no item now."""
        return self._call("empty")

    def full(self) -> bool:
        """Whether a bounded queue has no room now."""
        return self._call("full")


class JoinableQueueProxy(QueueProxy):
    """manager.JoinableQueue(): a QueueProxy whose consumers mark items done and whose join() waits for them all."""

    _typeid = "JoinableQueue"

    def task_done(self) -> None:
        """Marks one item got as processed; ValueError when called more times than items were put."""
        self._call("taskDone")

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until every item is done; False if `timeout` ran out first."""
        return self._call("join", _wait_timeout(timeout))


class AcquirerProxy(BaseProxy):
    """manager.Lock(), RLock(), Semaphore() and BoundedSemaphore(). A lock held by a
    process whose connection drops (it exited or was killed) is released by the server."""

    _typeid = "Lock"

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """As threading's: True once acquired; False when not `blocking` and it is taken, or when
        `timeout` (seconds; -1 or None: no limit) runs out."""
        return self._call("acquire", blocking, _acquire_timeout(blocking, timeout))

    def release(self) -> None:
        """Releases it; RuntimeError for a lock this client does not hold."""
        self._call("release")

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class LockProxy(AcquirerProxy):
    """manager.Lock(): a lock living in the manager process, usable in ``with``."""

    def locked(self) -> bool:
        """Whether some client holds the lock now."""
        return self._call("locked")


class RLockProxy(LockProxy):
    """manager.RLock(): a reentrant lock living in the manager process."""

    _typeid = "RLock"


class SemaphoreProxy(AcquirerProxy):
    """manager.Semaphore(value): a semaphore living in the manager process."""

    _typeid = "Semaphore"

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """As threading.Semaphore's: True once a unit is taken; False when not `blocking` and none
        is free, or when `timeout` runs out."""
        if not blocking and timeout is not None:
            raise ValueError("can't specify timeout for non-blocking acquire")
        return self._call("acquire", blocking, _wait_timeout(timeout))

    def release(self, n: int = 1) -> None:  # type: ignore[override]
        """Gives back `n` units; ValueError past a BoundedSemaphore's initial value."""
        self._call("release", n)

    def get_value(self) -> int:
        """The units free now."""
        return self._call("value")


class BoundedSemaphoreProxy(SemaphoreProxy):
    """manager.BoundedSemaphore(value): a semaphore that refuses to be released past its initial value."""

    _typeid = "BoundedSemaphore"


class EventProxy(BaseProxy):
    """manager.Event(): an event flag living in the manager process."""

    _typeid = "Event"

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._call("isSet")

    def set(self) -> None:
        """Sets the flag and wakes every waiter."""
        self._call("set")

    def clear(self) -> None:
        """Clears the flag."""
        self._call("clear")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits until the flag is set, up to `timeout` seconds (None: no limit); returns the flag."""
        return self._call("wait", _wait_timeout(timeout))


class ConditionProxy(AcquirerProxy):
    """manager.Condition(lock): a condition variable living in the manager process, usable in ``with``."""

    _typeid = "Condition"

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Releases the lock, waits for a notify up to `timeout` seconds (None: no limit), takes the
        lock again; False on timeout."""
        return self._call("wait", _wait_timeout(timeout))

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """As threading.Condition.wait_for: the predicate runs here, with the lock held."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wakes up to `n` waiters, as threading.Condition.notify."""
        self._call("notify", n)

    def notify_all(self) -> None:
        """Wakes every waiter, as threading.Condition.notify_all."""
        self._call("notifyAll")


class BarrierProxy(BaseProxy):
    """manager.Barrier(parties, action, timeout): a barrier living in the manager process."""

    _typeid = "Barrier"

    def wait(self, timeout: Optional[float] = None) -> int:
        """None waits as long as the barrier's own timeout says."""
        return self._call("wait", _wait_timeout(timeout))

    def reset(self) -> None:
        """Returns the barrier to its empty state; waiters get BrokenBarrierError."""
        self._call("reset")

    def abort(self) -> None:
        """Breaks the barrier: present and future waiters get BrokenBarrierError."""
        self._call("abort")

    @property
    def parties(self) -> int:
        """The number of parties the barrier waits for."""
        return self._call("parties")

    @property
    def n_waiting(self) -> int:
        """The number of parties waiting now."""
        return self._call("nWaiting")

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._call("broken")


# The proxy class for each kind the server names (Manager.attach).
_PROXY_BY_KIND = {
    "dict": DictProxy, "list": ListProxy, "namespace": NamespaceProxy, "value": ValueProxy,
    "array": ArrayProxy, "queue": QueueProxy, "joinable_queue": JoinableQueueProxy, "lock": LockProxy,
    "rlock": RLockProxy, "semaphore": SemaphoreProxy, "bounded_semaphore": BoundedSemaphoreProxy,
    "event": EventProxy, "condition": ConditionProxy, "barrier": BarrierProxy,
}


class BaseManager:
    """A Manager server and a connection to it, as ``multiprocessing.managers.BaseManager``:
    subclass it and ``register`` your own types, whose objects live in the server process
    and are reached through proxies.

    ``BaseManager(address=None, authkey=None)``: `address` is where the server listens
    (None: a unix socket in a private directory; ``(host, port)`` for TCP, which needs an
    authkey); `authkey` defaults to ``multiprocessing.current_process().authkey``, which
    children inherit. ``start()`` runs a server process, ``connect()`` uses one that runs
    elsewhere, ``get_server().serve_forever()`` serves from this process. As a context
    manager it starts the server if need be and shuts it down on exit.
    """

    _registry: Dict[str, _object_server.Registration] = {}

    def __init__(
        self, address: Optional[Address] = None, authkey: Optional[bytes] = None, serializer: str = "pickle",
        ctx: Any = None, *, shutdown_timeout: float = 1.0, tls: _Tls = _NO_TLS,
    ) -> None:
        # `serializer` is accepted for multiprocessing's sake: arguments and results travel
        # as Values whatever it says.
        self._address = address
        self._authkey = bytes(_check_authkey(authkey) if authkey is not None else current_process().authkey)
        self._tls = tls
        self._ctx = ctx
        self._shutdown_timeout = shutdown_timeout
        self._engine: Optional["_xproc.Manager"] = None
        self._stop_server: Optional[Callable[[], None]] = None
        self._process: Any = None  # what start() ran for registered types

    @classmethod
    def register(
        cls, typeid: str, callable: Optional[Callable[..., Any]] = None, proxytype: Optional[type] = None,
        exposed: Optional[Iterable[str]] = None, method_to_typeid: Optional[Dict[str, str]] = None,
        create_method: bool = True,
    ) -> None:
        """Registers a type: ``manager.<typeid>(*args, **kwargs)`` then calls `callable` with them
        in the server process and returns a proxy of what it made (of class `proxytype`, by
        default one whose methods are the `exposed` ones: the object's public methods unless
        given). A client that only connects registers the typeid without a callable.
        `method_to_typeid` maps methods whose results become shared objects to the typeid
        of those (their proxies are that typeid's proxytype)."""
        if "_registry" not in cls.__dict__:
            cls._registry = dict(cls._registry)
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for method, result_typeid in method_to_typeid.items():
                if not isinstance(method, str) or not isinstance(result_typeid, str):
                    raise TypeError("method_to_typeid maps method names to typeids (str to str)")
            method_to_typeid = dict(method_to_typeid)
        cls._registry[typeid] = (callable, None if exposed is None else tuple(exposed), method_to_typeid, proxytype)
        if create_method:
            def create(self: "BaseManager", /, *args: Any, **kwds: Any) -> Any:
                return self._create(typeid, args, kwds)

            create.__name__ = create.__qualname__ = typeid
            setattr(cls, typeid, create)

    def get_server(self) -> _object_server.Server:
        """A server bound to this manager's address, serving from this process: call its
        ``serve_forever()``."""
        if self._engine is not None:
            raise RuntimeError("this manager has already been started or connected")
        return _object_server.Server(self._registry, self._server_address()[0], self._authkey)

    def start(self, initializer: Optional[Callable[..., Any]] = None, initargs: Iterable[Any] = ()) -> None:
        """Starts the server process (running ``initializer(*initargs)`` first) and connects to it."""
        if self._engine is not None:
            raise RuntimeError("this manager has already been started or connected")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not self._registry and initializer is None:
            # Nothing of Python's to serve: the C++ server, forked without an interpreter.
            address = "" if self._address is None else _address_text(self._address)
            self._engine = _xproc.Manager(address, self._authkey)
        else:
            self._engine = self._start_python_server(initializer, tuple(initargs))
        _remember_manager(self._engine, self._engine.address, self._authkey, self)
        _registries[self._engine.address] = self._registry

    def _server_address(self) -> Tuple[str, Optional[str]]:
        """Where a server of this manager binds, and the private directory made for it."""
        if self._address is not None:
            return _address_text(self._address), None
        directory = tempfile.mkdtemp(prefix="xproc-manager-")
        return "unix:" + os.path.join(directory, "manager.sock"), directory

    def _start_python_server(self, initializer: Optional[Callable[..., Any]], initargs: tuple) -> "_xproc.Manager":
        """A server process running this interpreter's code (multiprocessing's start method),
        so that the registered callables can run there."""
        import multiprocessing

        ctx = self._ctx or multiprocessing.get_context()
        address, directory = self._server_address()
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_object_server.run_server, name=f"{type(self).__name__}-server",
            args=(self._registry, address, self._authkey, writer, initializer, initargs, os.getpid()),
        )
        process.start()
        writer.close()
        try:
            status, where, message = reader.recv()
        except EOFError:
            process.join()
            status, where, message = "error", "RuntimeError", f"the server process exited with code {process.exitcode}"
        finally:
            reader.close()
        if status != "ok":
            process.join()
            if directory:
                shutil.rmtree(directory, ignore_errors=True)
            raise _remote_exception(RuntimeError(f"{where}: {message}"))
        engine = _xproc.Manager.connect(where, self._authkey)
        self._process = process
        self._stop_server = util.Finalize(
            self, _stop_python_server, args=(process, engine, directory, self._shutdown_timeout), exitpriority=0
        )
        return engine

    def connect(self) -> None:
        """Connects to a server started elsewhere (``AuthenticationError`` for a wrong key)."""
        if self._address is None:
            raise ValueError("connect() needs the address of a running manager")
        address = _address_text(self._address)
        if self._tls != _NO_TLS:
            _tls_by_address[address] = self._tls
        self._engine = _xproc.Manager.connect(address, self._authkey, *self._tls)
        _remember_manager(self._engine, address, self._authkey, self)
        _registries[address] = self._registry

    def shutdown(self) -> None:
        """Stops the server (if this process started it); proxies stop working."""
        if self._stop_server is not None:
            self._stop_server()
        elif self._engine is not None:
            self._engine.shutdown()

    def join(self, timeout: Optional[float] = None) -> None:
        """Kept for multiprocessing's sake: shutdown() already waits for the server to end."""

    def __enter__(self) -> "BaseManager":
        if self._engine is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @property
    def address(self) -> Address:
        """Where the server listens: a unix socket path or ``(host, port)``; ValueError before
        start()."""
        return _address_value(self._started().address)

    @property
    def authkey(self) -> bytes:
        """The key clients log in with."""
        return self._authkey

    @property
    def pid(self) -> Optional[int]:
        """The server's pid when this process started it."""
        if self._process is not None:
            return self._process.pid
        return self._started().pid or None

    def _started(self) -> "_xproc.Manager":
        if self._engine is None:
            raise ValueError("the manager has not been started (call start() or use xproc.Manager())")
        return self._engine

    def _create(self, typeid: str, args: tuple, kwds: dict) -> Any:
        """A proxy of a new object of the registered type `typeid`, made in the server."""
        engine = self._started()
        remote = engine.make("user", "", typeid, args, kwds)
        _, exposed, _, proxytype = self._registry[typeid]
        return _registered_proxy(typeid, proxytype, exposed, remote, engine.address, self._authkey)


def _stop_python_server(process: Any, engine: "_xproc.Manager", directory: Optional[str], timeout: float) -> None:
    """Asks the server process to stop, then makes sure it has."""
    if process.is_alive():
        try:
            engine.stop_server()
        except OSError:
            pass  # already gone, or not answering: it is terminated below
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


class AutoProxy(BaseProxy):
    """The proxy of a registered type given no proxytype: one method per exposed name,
    each calling the referent's method of that name."""

    _typeid = ""

    def __reduce__(self) -> Any:
        authkey = self._authkey if get_spawning_popen() is not None else None
        tls = _tls_by_address.get(self._address)
        return (_rebuild_auto_proxy, (self._typeid, self._exposed_, self._address, authkey, self._remote.id, tls))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_auto_proxy_classes: Dict[Tuple[str, Tuple[str, ...]], type] = {}


def _auto_proxy_class(typeid: str, exposed: Tuple[str, ...]) -> type:
    """The AutoProxy subclass for `typeid` with these methods (made once)."""
    key = (typeid, exposed)
    cls = _auto_proxy_classes.get(key)
    if cls is None:
        def method(name: str) -> Callable[..., Any]:
            def call(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
                return self._callmethod(name, args, kwds)

            call.__name__ = call.__qualname__ = name
            return call

        namespace: Dict[str, Any] = {name: method(name) for name in exposed}
        namespace.update(_typeid=typeid, _exposed_=exposed)
        cls = _auto_proxy_classes[key] = type(f"AutoProxy[{typeid}]", (AutoProxy,), namespace)
    return cls


def _registered_proxy(
    typeid: str, proxytype: Optional[type], exposed: Optional[Tuple[str, ...]], remote: Any, address: str,
    authkey: Optional[bytes],
) -> BaseProxy:
    if proxytype is None or proxytype is AutoProxy:
        proxytype = _auto_proxy_class(typeid, tuple(exposed) if exposed is not None else tuple(remote.call("exposed")))
    return proxytype(remote, address, authkey)


# The registered types of the managers this process started or connected to, by address:
# how a shared result (method_to_typeid) finds its proxytype. A spawned child has none,
# and gets AutoProxy, as multiprocessing's does.
_registries: Dict[str, Dict[str, _object_server.Registration]] = {}


def _claim_shared(typeid: str, claim: bytes, address: str, authkey: Optional[bytes]) -> BaseProxy:
    """The proxy of the shared object a method returned (`claim` from its reply)."""
    engine = _manager_for(address, authkey)
    remote = engine.make("user", "", typeid, (), {_object_server.CLAIM: claim})
    registration = _registries.get(address, {}).get(typeid)
    proxytype, exposed = (registration[3], registration[1]) if registration else (None, None)
    return _registered_proxy(typeid, proxytype, exposed, remote, address, authkey)


def _rebuild_auto_proxy(
    typeid: str, exposed: Tuple[str, ...], address: str, authkey: Optional[bytes], object_id: int,
    tls: Optional[_Tls] = None,
) -> BaseProxy:
    return _rebuild_proxy(_auto_proxy_class(typeid, exposed), address, authkey, object_id, tls)


class SyncManager(BaseManager):
    """A Manager server and the factories of its shared objects, as
    ``multiprocessing.managers.SyncManager``.

    ``SyncManager(address=None, authkey=None)``: `address` is where the server listens
    (None: a unix socket in a private directory; ``(host, port)`` for TCP, which needs an
    authkey); `authkey` defaults to ``multiprocessing.current_process().authkey``, which
    children inherit. Call ``start()`` (or use ``xproc.Manager()``) to run a server,
    ``connect()`` to use one that runs elsewhere. As a context manager it shuts the
    server down on exit. Subclasses may ``register`` their own types besides.
    """

    def _make(self, cls: type, kind: str, name: Optional[str], *args: Any) -> Any:
        """A proxy of class `cls` for a new object of `kind` (or the one named `name`), made
        by its factory in schema/xproc/manager.capnp from `args`."""
        return cls(self._started().make(kind, name or "", *args), self._started().address, self._authkey)

    # The factories, as SyncManager's, plus name= for named objects.
    def dict(self, *args: Any, name: Optional[str] = None, **kwargs: Any) -> DictProxy:
        """A dict on the server, made as ``dict(*args, **kwargs)``; with ``name=``, the dict
        registered under that name (made if new)."""
        return self._make(DictProxy, "dict", name, dict(*args, **kwargs))

    def list(self, sequence: Iterable[Any] = (), *, name: Optional[str] = None) -> ListProxy:
        """A list on the server holding `sequence`'s items; with ``name=``, the one registered under
        that name."""
        return self._make(ListProxy, "list", name, list(sequence))

    def Namespace(self, *, name: Optional[str] = None, **attributes: Any) -> NamespaceProxy:
        """A namespace on the server with `attributes` set; with ``name=``, the one registered under
        that name."""
        namespace = self._make(NamespaceProxy, "namespace", name)
        for key, value in attributes.items():
            setattr(namespace, key, value)
        return namespace

    def Value(self, typecode: str, value: Any, lock: bool = True, *, name: Optional[str] = None) -> ValueProxy:
        """A single value of array typecode `typecode` (``lock`` is accepted for multiprocessing's
        sake; every call is atomic); with ``name=``, the one registered under that name."""
        return self._make(ValueProxy, "value", name, typecode, value)

    def Array(self, typecode: str, sequence: Iterable[Any], lock: bool = True, *, name: Optional[str] = None) -> ArrayProxy:
        """A fixed-length array of typecode `typecode` holding `sequence`'s items; with ``name=``,
        the one registered under that name."""
        return self._make(ArrayProxy, "array", name, typecode, sequence)

    def Queue(self, maxsize: int = 0, *, name: Optional[str] = None) -> QueueProxy:
        """A queue.Queue on the server (0: unbounded); with ``name=``, the one registered under that
        name."""
        return self._make(QueueProxy, "queue", name, maxsize)

    def JoinableQueue(self, maxsize: int = 0, *, name: Optional[str] = None) -> JoinableQueueProxy:
        """A queue with task_done() and join(); with ``name=``, the one registered under that name."""
        return self._make(JoinableQueueProxy, "joinable_queue", name, maxsize)

    def Lock(self, *, name: Optional[str] = None) -> LockProxy:
        """A lock, released by the server if its holder's connection drops; with ``name=``, the one
        registered under that name."""
        return self._make(LockProxy, "lock", name)

    def RLock(self, *, name: Optional[str] = None) -> LockProxy:
        """A reentrant lock; with ``name=``, the one registered under that name."""
        return self._make(RLockProxy, "rlock", name)

    def Semaphore(self, value: int = 1, *, name: Optional[str] = None) -> SemaphoreProxy:
        """A semaphore with `value` units; with ``name=``, the one registered under that name."""
        return self._make(SemaphoreProxy, "semaphore", name, value)

    def BoundedSemaphore(self, value: int = 1, *, name: Optional[str] = None) -> SemaphoreProxy:
        """A semaphore that refuses releases past `value`; with ``name=``, the one registered under
        that name."""
        return self._make(BoundedSemaphoreProxy, "bounded_semaphore", name, value)

    def Event(self, *, name: Optional[str] = None) -> EventProxy:
        """An event flag; with ``name=``, the one registered under that name."""
        return self._make(EventProxy, "event", name)

    def Condition(self, lock: Optional[LockProxy] = None, *, name: Optional[str] = None) -> ConditionProxy:
        """A condition variable over `lock` (a Lock or RLock of this manager; None: a new RLock);
        with ``name=``, the one registered under that name."""
        return self._make(ConditionProxy, "condition", name, 0 if lock is None else lock._id)

    def Barrier(
        self, parties: int, action: Optional[Callable[[], Any]] = None, timeout: Optional[float] = None,
        *, name: Optional[str] = None,
    ) -> BarrierProxy:
        """A barrier for `parties` parties with a default `timeout`; ``action`` cannot run on the
        server (ValueError). With ``name=``, the one registered under that name."""
        if action is not None:
            raise ValueError("a Barrier action cannot run in the manager process; run it after wait() returns 0")
        return self._make(BarrierProxy, "barrier", name, parties, timeout)

    def names(self) -> List[str]:
        """The names objects are registered under, sorted."""
        return self._started().names()

    def unregister(self, name: str) -> None:
        """Forgets a name (the object lives on while proxies hold it)."""
        self._started().unregister(name)


def Manager(address: Optional[Address] = None, authkey: Optional[bytes] = None) -> SyncManager:
    """Starts a Manager server process and returns its started SyncManager."""
    manager = SyncManager(address, authkey)
    manager.start()
    return manager


def connect(
    address: Address,
    authkey: Optional[bytes] = None,
    *,
    cafile: Optional[str] = None,
    certfile: Optional[str] = None,
    keyfile: Optional[str] = None,
    server_hostname: Optional[str] = None,
) -> SyncManager:
    """A SyncManager for a server started elsewhere (another program, ``xproc serve``, C++).

    For a ``"tls:host:port"`` address, as Python's ``ssl`` takes them: the server's
    certificate must chain to ``cafile`` (None: the system's trusted CAs) and name
    ``server_hostname`` (None: the address's host); ``certfile`` and ``keyfile`` are the
    client's own certificate, for a server that asks for one. A failed handshake raises
    ``ConnectionError``."""
    tls = (cafile or "", certfile or "", keyfile or "", server_hostname or "")
    manager = SyncManager(address, authkey, tls=tls)
    manager.connect()
    return manager
