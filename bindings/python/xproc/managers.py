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
import os
import threading
from collections.abc import MutableMapping, MutableSequence
from multiprocessing import current_process
from multiprocessing.context import get_spawning_popen
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from . import _xproc
from ._proxy_refs import ProxyRef
from ._proxy_refs import remember as _remember_manager
from .connection import Address, _address_text, _address_value, _check_authkey

__all__ = ["Manager", "SyncManager", "connect", "MISSING", "ProxyRef"]


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

    def __init__(self, remote: Any, address: str, authkey: Optional[bytes]) -> None:
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_address", address)
        object.__setattr__(self, "_authkey", authkey)

    def __reduce__(self) -> Any:
        authkey = self._authkey if get_spawning_popen() is not None else None
        tls = _tls_by_address.get(self._address)
        return (_rebuild_proxy, (type(self), self._address, authkey, self._remote.id, tls))

    def __str__(self) -> str:
        return repr(self._remote)  # the remote object's repr, as multiprocessing's proxies print

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._typeid!r} at {id(self):#x}>"

    @property
    def _id(self) -> int:
        return self._remote.id

    def _xproc_proxy_ref(self) -> Tuple[int, int]:
        """How a proxy travels in a Value: its manager's instance and the object's id."""
        return (self._remote.manager_instance, self._remote.id)


# Items a list iterator reads per call.
_ITERATION_CHUNK = 256


class _DictKeyIterator:
    """A dict proxy's keys, as Python's dict iterator: RuntimeError when the dict's size
    changed after iter(). The keys are read in one call at the first next(); the size is
    checked then and once more at the end."""

    __slots__ = ("_remote", "_size", "_keys", "_next")

    def __init__(self, remote: Any) -> None:
        self._remote = remote
        self._size = len(remote)
        self._keys: Optional[List[Any]] = None
        self._next = 0

    def __iter__(self) -> "_DictKeyIterator":
        return self

    def __next__(self) -> Any:
        if self._keys is None:
            self._keys = self._remote.keys()
            self._check_size(len(self._keys))
        if self._next < len(self._keys):
            self._next += 1
            return self._keys[self._next - 1]
        if self._next == len(self._keys):
            self._next += 1  # exhausted: checked once, then StopIteration for good
            self._check_size(len(self._remote))
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
            return self._remote[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: Any, value: Any) -> None:
        self._remote[key] = value

    def __delitem__(self, key: Any) -> None:
        try:
            del self._remote[key]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return key in self._remote

    def __iter__(self) -> Iterator[Any]:
        return _DictKeyIterator(self._remote)

    def __len__(self) -> int:
        return len(self._remote)

    def keys(self) -> List[Any]:  # type: ignore[override]
        return self._remote.keys()

    def values(self) -> List[Any]:  # type: ignore[override]
        return self._remote.values()

    def items(self) -> List[Tuple[Any, Any]]:  # type: ignore[override]
        return self._remote.items()

    def get(self, key: Any, default: Any = None) -> Any:
        return self._remote.get(key, default)

    def pop(self, key: Any, default: Any = MISSING) -> Any:
        if default is MISSING:
            try:
                return self._remote.pop(key)
            except KeyError:
                raise KeyError(key) from None
        return self._remote.pop(key, default)

    def popitem(self) -> Tuple[Any, Any]:
        return self._remote.popitem()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._remote.setdefault(key, default)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        self._remote.update(dict(other, **kwargs))

    def clear(self) -> None:
        self._remote.clear()

    def copy(self) -> Dict[Any, Any]:
        """A snapshot as a plain dict (one round trip)."""
        return self._remote.copy()

    def increment(self, key: Any, delta: Any = 1) -> Any:
        """``d[key] = d.get(key, 0) + delta`` atomically; returns the new value."""
        return self._remote.increment(key, delta)

    def compare_and_set(self, key: Any, expected: Any, value: Any) -> Tuple[bool, Any]:
        """Sets ``d[key] = value`` if ``d[key] == expected`` (``expected=MISSING``: if the key
        is absent), atomically. Returns (whether it did, the value there now or MISSING)."""
        swapped, present, current = self._remote.compare_and_set(key, expected is not MISSING, expected, value)
        return swapped, current if present else MISSING

    def get_many(self, keys: Iterable[Any], default: Any = None) -> List[Any]:
        """The values of many keys in one round trip (`default` for missing ones)."""
        return self._remote.get_many(list(keys), default)

    def set_many(self, items: Any) -> None:
        """Sets many keys in one round trip, atomically."""
        self._remote.set_many(dict(items))


class ListProxy(BaseProxy, MutableSequence):
    """A list living in the manager process."""

    _typeid = "list"

    def __getitem__(self, index: Any) -> Any:
        return self._remote[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self._remote[index] = value

    def __delitem__(self, index: Any) -> None:
        del self._remote[index]

    def __len__(self) -> int:
        return len(self._remote)

    def __contains__(self, value: object) -> bool:
        return value in self._remote

    def __iter__(self) -> Iterator[Any]:
        """Reads the list as it goes, a slice per call: what changes after iter() and before
        an item is read is seen (multiprocessing's iterator reads an item per call)."""
        start = 0
        while True:
            chunk = self._remote[start : start + _ITERATION_CHUNK]
            if not chunk:
                return
            yield from chunk
            start += len(chunk)

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._remote.copy())

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
        self._remote.extend(list(other))
        return self

    def __imul__(self, times: int) -> "ListProxy":
        self._remote.multiply(times)
        return self

    def insert(self, index: int, value: Any) -> None:
        self._remote.insert(index, value)

    def append(self, value: Any) -> None:
        self._remote.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self._remote.extend(list(values))

    def pop(self, index: int = -1) -> Any:
        return self._remote.pop(index)

    def remove(self, value: Any) -> None:
        self._remote.remove(value)

    def index(self, value: Any, start: int = 0, stop: Optional[int] = None) -> int:
        return self._remote.index(value, start, stop)

    def count(self, value: Any) -> int:
        return self._remote.count(value)

    def reverse(self) -> None:
        self._remote.reverse()

    def sort(self, *, key: Optional[Callable[[Any], Any]] = None, reverse: bool = False) -> None:
        if key is not None:
            raise TypeError("a key function cannot run in the manager process; sort a copy() instead")
        self._remote.sort(reverse)

    def copy(self) -> List[Any]:
        """A snapshot as a plain list (one round trip)."""
        return self._remote.copy()


class NamespaceProxy(BaseProxy):
    """A namespace living in the manager process: ``ns.x = 1`` in one process is
    ``ns.x`` in every other. Names starting with ``_`` stay local to the proxy."""

    _typeid = "Namespace"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._remote.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._remote.set(name, value)

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
        else:
            self._remote.delete(name)


class ValueProxy(BaseProxy):
    """manager.Value: ``.value`` (or ``get()``/``set()``) reads and writes it remotely."""

    _typeid = "Value"

    def get(self) -> Any:
        return self._remote.get()

    def set(self, value: Any) -> None:
        self._remote.set(value)

    value = property(get, set)

    @property
    def typecode(self) -> str:
        return self._remote.typecode

    def increment(self, delta: Any = 1) -> Any:
        """``value += delta`` atomically; returns the new value."""
        return self._remote.increment(delta)


class ArrayProxy(BaseProxy):
    """manager.Array: a fixed-length array of one typecode."""

    _typeid = "Array"

    def __len__(self) -> int:
        return len(self._remote)

    def __getitem__(self, index: Any) -> Any:
        return self._remote[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self._remote[index] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._remote[:])

    def tolist(self) -> List[Any]:
        return self._remote[:]

    @property
    def typecode(self) -> str:
        return self._remote.typecode


class QueueProxy(BaseProxy):
    """manager.Queue(): a queue living in the manager process."""

    _typeid = "Queue"

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        self._remote.put(obj, block, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        return self._remote.get(block, timeout)

    def put_nowait(self, obj: Any) -> None:
        self._remote.put(obj, False)

    def get_nowait(self) -> Any:
        return self._remote.get(False)

    def qsize(self) -> int:
        return self._remote.qsize()

    def empty(self) -> bool:
        return self._remote.empty()

    def full(self) -> bool:
        return self._remote.full()


class JoinableQueueProxy(QueueProxy):
    _typeid = "JoinableQueue"

    def task_done(self) -> None:
        self._remote.task_done()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until every item is done; False if `timeout` ran out first."""
        return self._remote.join(timeout)


class AcquirerProxy(BaseProxy):
    """manager.Lock(), RLock(), Semaphore() and BoundedSemaphore(). A lock held by a
    process whose connection drops (it exited or was killed) is released by the server."""

    _typeid = "Lock"

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return self._remote.acquire(blocking, -1.0 if timeout is None else timeout)

    def release(self) -> None:
        self._remote.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class LockProxy(AcquirerProxy):
    def locked(self) -> bool:
        return self._remote.locked()


class RLockProxy(LockProxy):
    _typeid = "RLock"


class SemaphoreProxy(AcquirerProxy):
    _typeid = "Semaphore"

    def release(self, n: int = 1) -> None:  # type: ignore[override]
        self._remote.release(n)

    def get_value(self) -> int:
        return self._remote.get_value()


class BoundedSemaphoreProxy(SemaphoreProxy):
    _typeid = "BoundedSemaphore"


class EventProxy(BaseProxy):
    _typeid = "Event"

    def is_set(self) -> bool:
        return self._remote.is_set()

    def set(self) -> None:
        self._remote.set()

    def clear(self) -> None:
        self._remote.clear()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._remote.wait(timeout)


class ConditionProxy(AcquirerProxy):
    _typeid = "Condition"

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._remote.wait(timeout)

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
        self._remote.notify(n)

    def notify_all(self) -> None:
        self._remote.notify_all()


class BarrierProxy(BaseProxy):
    _typeid = "Barrier"

    def wait(self, timeout: Optional[float] = None) -> int:
        return self._remote.wait(timeout)

    def reset(self) -> None:
        self._remote.reset()

    def abort(self) -> None:
        self._remote.abort()

    @property
    def parties(self) -> int:
        return self._remote.parties

    @property
    def n_waiting(self) -> int:
        return self._remote.n_waiting

    @property
    def broken(self) -> bool:
        return self._remote.broken


# The proxy class for each kind the server names (Manager.attach).
_PROXY_BY_KIND = {
    "dict": DictProxy, "list": ListProxy, "namespace": NamespaceProxy, "value": ValueProxy,
    "array": ArrayProxy, "queue": QueueProxy, "joinable_queue": JoinableQueueProxy, "lock": LockProxy,
    "rlock": RLockProxy, "semaphore": SemaphoreProxy, "bounded_semaphore": BoundedSemaphoreProxy,
    "event": EventProxy, "condition": ConditionProxy, "barrier": BarrierProxy,
}


class SyncManager:
    """A Manager server and the factories of its shared objects, as
    ``multiprocessing.managers.SyncManager``.

    ``SyncManager(address=None, authkey=None)``: `address` is where the server listens
    (None: a unix socket in a private directory; ``(host, port)`` for TCP, which needs an
    authkey); `authkey` defaults to ``multiprocessing.current_process().authkey``, which
    children inherit. Call ``start()`` (or use ``xproc.Manager()``) to run a server,
    ``connect()`` to use one that runs elsewhere. As a context manager it shuts the
    server down on exit.
    """

    def __init__(self, address: Optional[Address] = None, authkey: Optional[bytes] = None, *, tls: _Tls = _NO_TLS) -> None:
        self._address = address
        self._authkey = bytes(_check_authkey(authkey) if authkey is not None else current_process().authkey)
        self._tls = tls
        self._engine: Optional["_xproc.Manager"] = None

    def start(self) -> None:
        """Starts the server process and connects to it."""
        if self._engine is not None:
            raise RuntimeError("this manager has already been started or connected")
        address = "" if self._address is None else _address_text(self._address)
        self._engine = _xproc.Manager(address, self._authkey)
        _remember_manager(self._engine, self._engine.address, self._authkey, self)

    def connect(self) -> None:
        """Connects to a server started elsewhere (``AuthenticationError`` for a wrong key)."""
        if self._address is None:
            raise ValueError("connect() needs the address of a running manager")
        address = _address_text(self._address)
        if self._tls != _NO_TLS:
            _tls_by_address[address] = self._tls
        self._engine = _xproc.Manager.connect(address, self._authkey, *self._tls)
        _remember_manager(self._engine, address, self._authkey, self)

    def shutdown(self) -> None:
        """Stops the server (if this process started it); proxies stop working."""
        if self._engine is not None:
            self._engine.shutdown()

    def __enter__(self) -> "SyncManager":
        if self._engine is None:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @property
    def address(self) -> Address:
        return _address_value(self._started().address)

    @property
    def authkey(self) -> bytes:
        return self._authkey

    @property
    def pid(self) -> Optional[int]:
        """The server's pid when this process started it."""
        return self._started().pid or None

    def _started(self) -> "_xproc.Manager":
        if self._engine is None:
            raise ValueError("the manager has not been started (call start() or use xproc.Manager())")
        return self._engine

    def _proxy(self, cls: type, remote: Any) -> Any:
        return cls(remote, self._started().address, self._authkey)

    # The factories, as SyncManager's, plus name= for named objects.
    def dict(self, *args: Any, name: Optional[str] = None, **kwargs: Any) -> DictProxy:
        return self._proxy(DictProxy, self._started().dict(dict(*args, **kwargs), name or ""))

    def list(self, sequence: Iterable[Any] = (), *, name: Optional[str] = None) -> ListProxy:
        return self._proxy(ListProxy, self._started().list(sequence, name or ""))

    def Namespace(self, *, name: Optional[str] = None, **attributes: Any) -> NamespaceProxy:
        namespace = self._proxy(NamespaceProxy, self._started().namespace(name or ""))
        for key, value in attributes.items():
            setattr(namespace, key, value)
        return namespace

    def Value(self, typecode: str, value: Any, lock: bool = True, *, name: Optional[str] = None) -> ValueProxy:
        return self._proxy(ValueProxy, self._started().value(typecode, value, name or ""))

    def Array(self, typecode: str, sequence: Iterable[Any], lock: bool = True, *, name: Optional[str] = None) -> ArrayProxy:
        return self._proxy(ArrayProxy, self._started().array(typecode, sequence, name or ""))

    def Queue(self, maxsize: int = 0, *, name: Optional[str] = None) -> QueueProxy:
        return self._proxy(QueueProxy, self._started().queue(maxsize, name or ""))

    def JoinableQueue(self, maxsize: int = 0, *, name: Optional[str] = None) -> JoinableQueueProxy:
        return self._proxy(JoinableQueueProxy, self._started().joinable_queue(maxsize, name or ""))

    def Lock(self, *, name: Optional[str] = None) -> LockProxy:
        return self._proxy(LockProxy, self._started().lock(name or ""))

    def RLock(self, *, name: Optional[str] = None) -> LockProxy:
        return self._proxy(RLockProxy, self._started().rlock(name or ""))

    def Semaphore(self, value: int = 1, *, name: Optional[str] = None) -> SemaphoreProxy:
        return self._proxy(SemaphoreProxy, self._started().semaphore(value, name or ""))

    def BoundedSemaphore(self, value: int = 1, *, name: Optional[str] = None) -> SemaphoreProxy:
        return self._proxy(BoundedSemaphoreProxy, self._started().bounded_semaphore(value, name or ""))

    def Event(self, *, name: Optional[str] = None) -> EventProxy:
        return self._proxy(EventProxy, self._started().event(name or ""))

    def Condition(self, lock: Optional[LockProxy] = None, *, name: Optional[str] = None) -> ConditionProxy:
        remote_lock = None if lock is None else lock._remote
        return self._proxy(ConditionProxy, self._started().condition(remote_lock, name or ""))

    def Barrier(
        self, parties: int, action: Optional[Callable[[], Any]] = None, timeout: Optional[float] = None,
        *, name: Optional[str] = None,
    ) -> BarrierProxy:
        if action is not None:
            raise ValueError("a Barrier action cannot run in the manager process; run it after wait() returns 0")
        return self._proxy(BarrierProxy, self._started().barrier(parties, timeout, name or ""))

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
