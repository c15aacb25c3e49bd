"""xproc's C++ core (use the `xproc` package, not this module)"""

from typing import overload

from xproc import (
    DecodeError as DecodeError,
    MessageTooLarge as MessageTooLarge
)


class Struct:
    """
    A Cap'n Proto struct of a schema this process has not seen: its schema id and its flat message. Read it with `read(schema)`, or call `register_schema(schema)` so such structs arrive as pycapnp readers.
    """

    def __init__(self, schema_id: int, message: bytes) -> None: ...

    @property
    def schema_id(self) -> int: ...

    @property
    def message(self) -> bytes: ...

    def read(self, schema: object) -> object:
        """This struct as a reader of the pycapnp struct type `schema`."""

    def __eq__(self, arg: object, /) -> bool: ...

    def __hash__(self) -> int: ...

    def __repr__(self) -> str: ...

def register_schema(struct_type: object) -> None:
    """
    Makes structs of this pycapnp type arrive as its readers (types sent from this process are registered on first send).
    """

def encode(object: object | None) -> bytes:
    """The Value message for `object` (its standard flat serialization)."""

def decode(message: bytes) -> object:
    """The object a Value message holds; DecodeError when it is not one."""

class Queue:
    """A queue of messages in shared memory (the engine under xproc.Queue)."""

    def __init__(self, maxsize: int = 0, capacity_bytes: int = 8388608, max_message_bytes: int = 0, kind: int = 0, schema_id: int = 12336089219398877324, name: str | None = None, mode: int = 384, group: int | None = None) -> None:
        """
        A new queue: anonymous, or named with permission bits `mode` and group `group` (ValueError when the name is invalid or taken).
        """

    @staticmethod
    def open(name: str, mode: int = 384, owner: int | None = None, group: int | None = None) -> Queue:
        """
        Opens the named queue any process made: PermissionError unless it is owned by `owner` (default: this user) with permission bits within `mode` (and group `group` when it has group bits).
        """

    @staticmethod
    def adopt(fd: int) -> Queue:
        """
        Re-opens an anonymous queue from a received duplicate of its anonymous_fd (owned).
        """

    @staticmethod
    def remove(name: str) -> bool:
        """
        Unlinks a named queue (open handles keep working); False when there was none.
        """

    def put(self, obj: object | None, block: bool = True, timeout: float | None = None) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> object: ...

    def put_bytes(self, message: bytes, block: bool = True, timeout: float | None = None) -> None:
        """Puts raw bytes (not checked: the reader decides what they are)."""

    def get_bytes(self, block: bool = True, timeout: float | None = None) -> bytes: ...

    def qsize(self) -> int: ...

    def empty(self) -> bool: ...

    def full(self) -> bool: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    def task_done(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...

    @property
    def name(self) -> str: ...

    @property
    def schema_id(self) -> int: ...

    @property
    def maxsize(self) -> int: ...

    @property
    def capacity_bytes(self) -> int: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def anonymous_fd(self) -> int: ...

class Connection:
    """One end of a connection (the engine under xproc's Connection)."""

    def __init__(self, fd: int, readable: bool = True, writable: bool = True, schema_id: int = 12336089219398877324) -> None:
        """Takes ownership of the socket or pipe descriptor `fd`."""

    def send(self, obj: object | None) -> None: ...

    def recv(self) -> object: ...

    def send_bytes(self, buf: object, offset: int = 0, size: int | None = None) -> None: ...

    def recv_bytes(self, maxlength: int | None = None) -> bytes: ...

    def recv_bytes_into(self, buf: object, offset: int = 0) -> int: ...

    def poll(self, timeout: float | None = 0.0) -> bool: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def readable(self) -> bool: ...

    @property
    def writable(self) -> bool: ...

    @property
    def schema_id(self) -> int: ...

    def fileno(self) -> int: ...

    def wait_fileno(self) -> int:
        """
        A descriptor for xproc.connection.wait(): readable when a message arrives after poll(0) found none (or possibly for one another reader took), or when the other end goes. Unlike fileno(), it makes later receives cost nothing.
        """

    @property
    def shared_memory(self) -> bool: ...

    def handles(self) -> tuple:
        """
        The descriptors behind a shared-memory end (socket, ring0, ring1, control, wake0, wake1), then its side, readable and writable; the descriptors stay this end's: duplicate them to hand it on.
        """

    @staticmethod
    def adopt(socket: int, ring0: int, ring1: int, control: int, wake0: int, wake1: int, side: int, readable: bool, writable: bool, schema_id: int = 12336089219398877324) -> Connection:
        """
        Rebuilds a shared-memory end from duplicates of another process's handles (taking ownership).
        """

def pipe(duplex: bool = True, schema_id: int = 12336089219398877324) -> tuple[Connection, Connection]: ...

class Listener:
    """
    A bound, listening socket (the engine under xproc.connection.Listener).
    """

    def __init__(self, address: str = '', backlog: int = 1, authkey: bytes | None = None, handshake_timeout: float = 5.0) -> None: ...

    def accept(self, schema_id: int = 12336089219398877324) -> Connection: ...

    @property
    def address(self) -> str: ...

    def fileno(self) -> int: ...

    def keep_path(self) -> None: ...

    def close(self) -> None: ...

def client(address: str, authkey: bytes | None = None, schema_id: int = 12336089219398877324) -> Connection: ...

class DictProxy:
    """A dict held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def __getitem__(self, arg: object | None, /) -> object: ...

    def get(self, key: object | None, default: object | None = None) -> object: ...

    def __setitem__(self, arg0: object | None, arg1: object | None, /) -> None: ...

    def __delitem__(self, arg: object | None, /) -> None: ...

    def __contains__(self, arg: object | None, /) -> bool: ...

    def __len__(self) -> int: ...

    def keys(self) -> list: ...

    def values(self) -> list: ...

    def items(self) -> list: ...

    def update(self, arg: object, /) -> None: ...

    @overload
    def pop(self, arg: object | None, /) -> object: ...

    @overload
    def pop(self, arg0: object | None, arg1: object | None, /) -> object: ...

    def popitem(self) -> tuple: ...

    def setdefault(self, key: object | None, default: object | None = None) -> object: ...

    def clear(self) -> None: ...

    def copy(self) -> dict: ...

    def increment(self, key: object | None, delta: object | None = 1) -> object: ...

    def compare_and_set(self, arg0: object | None, arg1: bool, arg2: object | None, arg3: object | None, /) -> tuple: ...

    def get_many(self, keys: object, default: object | None = None) -> list: ...

    def set_many(self, arg: object, /) -> None: ...

class ListProxy:
    """A list held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    @overload
    def __getitem__(self, arg: int, /) -> object: ...

    @overload
    def __getitem__(self, arg: slice, /) -> list: ...

    @overload
    def __setitem__(self, arg0: int, arg1: object | None, /) -> None: ...

    @overload
    def __setitem__(self, arg0: slice, arg1: object, /) -> None: ...

    @overload
    def __delitem__(self, arg: int, /) -> None: ...

    @overload
    def __delitem__(self, arg: slice, /) -> None: ...

    def __len__(self) -> int: ...

    def __contains__(self, arg: object | None, /) -> bool: ...

    def append(self, arg: object | None, /) -> None: ...

    def extend(self, arg: object, /) -> None: ...

    def insert(self, arg0: int, arg1: object | None, /) -> None: ...

    def pop(self, index: int = -1) -> object: ...

    def remove(self, arg: object | None, /) -> None: ...

    def index(self, value: object | None, start: int = 0, stop: int | None = None) -> int: ...

    def count(self, arg: object | None, /) -> int: ...

    def reverse(self) -> None: ...

    def sort(self, reverse: bool = False) -> None: ...

    def copy(self) -> list: ...

    def multiply(self, arg: int, /) -> None: ...

class NamespaceProxy:
    """A namespace held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def get(self, arg: str, /) -> object: ...

    def set(self, arg0: str, arg1: object | None, /) -> None: ...

    def delete(self, arg: str, /) -> None: ...

    def items(self) -> list: ...

class ValueProxy:
    """A single value held by a manager (manager.Value)."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def get(self) -> object: ...

    def set(self, arg: object | None, /) -> None: ...

    def increment(self, delta: object | None = 1) -> object: ...

    @property
    def typecode(self) -> str: ...

class ArrayProxy:
    """A fixed-length typed array held by a manager (manager.Array)."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, arg: int, /) -> object: ...

    @overload
    def __getitem__(self, arg: slice, /) -> list: ...

    @overload
    def __setitem__(self, arg0: int, arg1: object | None, /) -> None: ...

    @overload
    def __setitem__(self, arg0: slice, arg1: object, /) -> None: ...

    @property
    def typecode(self) -> str: ...

class QueueProxy:
    """A queue held by a manager (manager.Queue)."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def put(self, obj: object | None, block: bool = True, timeout: float | None = None) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> object: ...

    def qsize(self) -> int: ...

    def empty(self) -> bool: ...

    def full(self) -> bool: ...

class JoinableQueueProxy(QueueProxy):
    """A joinable queue held by a manager."""

    def task_done(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...

class LockProxy:
    """A Lock or RLock held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def acquire(self, blocking: bool = True, timeout: float | None = -1.0) -> bool: ...

    def release(self) -> None: ...

    def locked(self) -> bool: ...

class SemaphoreProxy:
    """A Semaphore or BoundedSemaphore held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...

    def release(self, n: int = 1) -> None: ...

    def get_value(self) -> int: ...

class EventProxy:
    """An Event held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

class ConditionProxy:
    """A Condition held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def acquire(self, blocking: bool = True, timeout: float | None = -1.0) -> bool: ...

    def release(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def notify(self, n: int = 1) -> None: ...

    def notify_all(self) -> None: ...

class BarrierProxy:
    """A Barrier held by a manager."""

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def reset(self) -> None: ...

    def abort(self) -> None: ...

    @property
    def parties(self) -> int: ...

    @property
    def n_waiting(self) -> int: ...

    @property
    def broken(self) -> bool: ...

class Manager:
    """A Manager server this process started, or a connection to one."""

    def __init__(self, address: str = '', authkey: bytes | None = None) -> None:
        """
        Starts a server process (unix socket in a private directory unless `address` says otherwise) and connects to it.
        """

    @staticmethod
    def connect(address: str, authkey: bytes | None = None, cafile: str = '', certfile: str = '', keyfile: str = '', server_hostname: str = '') -> Manager:
        """
        A connection to a server started elsewhere; for a tls:host:port address, the server's certificate must chain to `cafile` (empty: the system's CAs) and name `server_hostname` (empty: the address's host), and `certfile`/`keyfile` are the client's own certificate, if any.
        """

    def shutdown(self) -> None: ...

    @property
    def address(self) -> str: ...

    @property
    def authkey(self) -> bytes | None: ...

    @property
    def pid(self) -> int: ...

    def dict(self, initial: object, name: str = '') -> DictProxy: ...

    def list(self, initial: object, name: str = '') -> ListProxy: ...

    def namespace(self, name: str = '') -> NamespaceProxy: ...

    def value(self, typecode: str, initial: object, name: str = '') -> ValueProxy: ...

    def array(self, typecode: str, initial: object, name: str = '') -> ArrayProxy: ...

    def queue(self, maxsize: int = 0, name: str = '') -> QueueProxy: ...

    def joinable_queue(self, maxsize: int = 0, name: str = '') -> JoinableQueueProxy: ...

    def lock(self, name: str = '') -> LockProxy: ...

    def rlock(self, name: str = '') -> LockProxy: ...

    def semaphore(self, value: int = 1, name: str = '') -> SemaphoreProxy: ...

    def bounded_semaphore(self, value: int = 1, name: str = '') -> SemaphoreProxy: ...

    def event(self, name: str = '') -> EventProxy: ...

    def condition(self, lock: LockProxy | None = None, name: str = '') -> ConditionProxy: ...

    def barrier(self, parties: int, timeout: float | None = None, name: str = '') -> BarrierProxy: ...

    def names(self) -> list[str]: ...

    def unregister(self, arg: str, /) -> None: ...

    @property
    def instance(self) -> int:
        """The server's random instance number, which proxies in messages carry."""

    def attach(self, id: int) -> tuple:
        """
        (kind, proxy) for object `id` of this manager: kind as 'dict', 'rlock' ...; the proxy holds the object (None for an object of a user's interface). KeyError once it is gone.
        """
