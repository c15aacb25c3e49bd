"""xproc's C++ core (use the `xproc` package, not this module)"""

from collections.abc import Sequence
from typing import Final

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

class MessageView:
    """
    The message Queue.get_view took, held in the queue: `with` gives the object, its arrays read-only memoryviews over the queue's memory, valid inside the block.
    """

    def __enter__(self) -> object: ...

    def __exit__(self, exc_type: object | None, exc_value: object | None, traceback: object | None) -> bool: ...

    def release(self) -> None:
        """
        Ends the view as the end of its `with` block does (the queue's other gets wait until then).
        """

class Queue:
    """A queue of messages in shared memory (the engine under xproc.Queue)."""

    def __init__(self, maxsize: int = 0, capacity_bytes: int = 1073741824, max_message_bytes: int = 0, kind: int = 0, schema_id: int = 12336089219398877324, name: str | None = None, mode: int = 384, group: int | None = None) -> None:
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

    def get_if_any(self, otherwise: object) -> object:
        """
        The oldest item, taken without waiting, or `otherwise` when there is none: no exception for the common miss (an event loop's attempts).
        """

    def put_if_room(self, obj: object | None) -> bool:
        """
        Puts `obj` without waiting: false, nothing put, when the queue is full.
        """

    def put_bytes(self, message: bytes, block: bool = True, timeout: float | None = None) -> None:
        """Puts raw bytes (not checked: the reader decides what they are)."""

    def get_bytes(self, block: bool = True, timeout: float | None = None) -> bytes: ...

    def get_view(self, block: bool = True, timeout: float | None = None) -> MessageView:
        """
        Takes the oldest message and leaves it in the queue's memory while the returned MessageView is used: its arrays are read-only memoryviews of that memory (no copy). The queue's other gets wait until the view is released (see xproc.Queue.get_view).
        """

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

class QueueWaiter:
    """
    A doorbell an event loop polls for a queue (xproc.queues awaits through it).
    """

    def __init__(self, queue: Queue, what: int) -> None: ...

    def fileno(self) -> int:
        """The descriptor to poll for reading."""

    def arm(self) -> bool:
        """
        After an attempt that would block: True when the caller may wait for fileno(), False when the queue changed since the waiter last looked (try again now).
        """

    def clear(self) -> None:
        """After fileno() was readable: reads the rings and looks again."""

    recheck_seconds: Final[float] = ...
    """(arg: object, /) -> float"""

class Connection:
    """One end of a connection (the engine under xproc's Connection)."""

    def __init__(self, fd: int, readable: bool = True, writable: bool = True, schema_id: int = 12336089219398877324) -> None:
        """Takes ownership of the socket or pipe descriptor `fd`."""

    def send(self, obj: object | None) -> None: ...

    def recv(self) -> object: ...

    def send_bytes(self, buf: object, offset: int = 0, size: int | None = None) -> None: ...

    def recv_bytes(self, maxlength: int | None = None) -> bytes: ...

    def recv_bytes_into(self, buf: object, offset: int = 0) -> int: ...

    def send_if_room(self, obj: object | None) -> int:
        """
        For xproc.Connection.asend: sends only if that needs no wait. 0: sent whole; 1: nothing sent or kept, wait for room (room_waiter(), else fileno() writable) and call again; 2: part went onto the socket, call try_finish_send() until True. A message too large for the connection's buffer (over 4 KiB on a socket, over the ring's inline limit) is sent blocking (0).
        """

    def send_bytes_if_room(self, buf: object, offset: int = 0, size: int | None = None) -> int:
        """
        For xproc.Connection.asend: sends only if that needs no wait. 0: sent whole; 1: nothing sent or kept, wait for room (room_waiter(), else fileno() writable) and call again; 2: part went onto the socket, call try_finish_send() until True. A message too large for the connection's buffer (over 4 KiB on a socket, over the ring's inline limit) is sent blocking (0).
        """

    def try_finish_send(self) -> bool:
        """
        Sends the rest of a message send_if_room began, without waiting: True when none is left.
        """

    def room_waiter(self) -> QueueWaiter | None:
        """
        A QueueWaiter rung when the receiver makes room in the ring this shared-memory end sends into; None for another end (its fileno() turns writable instead).
        """

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
        The descriptors behind a shared-memory end (socket, memory), then its side, readable and writable; the descriptors stay this end's: duplicate them to hand it on.
        """

    @staticmethod
    def adopt(socket: int, memory: int, side: int, readable: bool, writable: bool, schema_id: int = 12336089219398877324) -> Connection:
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

def settle_async_calls(loop: object) -> tuple:
    """
    Runs this thread's event loop without sleeping and sets the results of `loop`'s calls that finished; returns (failures as (future, token) pairs for async_result(), calls in flight).
    """

def async_result(token: int) -> None:
    """Raises a failed call's error, as RemoteObject.call() raises it."""

def cancel_async_call(token: int) -> None:
    """Drops a call: one in flight is cancelled, a settled one forgotten."""

class RemoteObject:
    """
    A Manager's shared object; call() reaches its methods by their names in schema/xproc/manager.capnp.
    """

    def call(self, method: str, *args, **kwargs) -> object:
        """
        Calls `method` (its schema name, as 'getItem') with parameters in schema order or by schema name; the result's one field, a tuple of several, or None.
        """

    def call_async(self, method: str, args: tuple, kwargs: dict, loop: object, future: object) -> tuple:
        """
        Sends `method` as call() would, on this thread's event-loop connection, without waiting; settle_async_calls(loop) settles `future`. Returns (token, batched, the connection's socket): a batched call leaves with the others of its loop turn and runs even if cancelled afterwards.
        """

    def async_fileno(self) -> int:
        """
        The socket of this thread's event-loop connection to the object's manager: readable when replies may have come.
        """

    def has_method(self, arg: str, /) -> bool: ...

    @property
    def id(self) -> int:
        """The object's id on its manager (what attach() takes)."""

    @property
    def kind(self) -> str: ...

    @property
    def manager_instance(self) -> int:
        """Its manager's instance number (Manager.instance)."""

    def __repr__(self) -> str: ...

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

    def stop_server(self) -> None:
        """
        Asks the server to stop (the Manager's shutdown call), whoever started it.
        """

    @property
    def address(self) -> str: ...

    @property
    def authkey(self) -> bytes | None: ...

    @property
    def pid(self) -> int: ...

    def make(self, kind: str, name: str, *args, **kwargs) -> object:
        """
        A new object of `kind` ('dict', 'joinable_queue' ...) made by its factory in schema/xproc/manager.capnp, or the one registered under `name`; the other parameters in schema order or by schema name.
        """

    def names(self) -> list[str]: ...

    def unregister(self, arg: str, /) -> None: ...

    @property
    def instance(self) -> int:
        """The server's random instance number, which proxies in messages carry."""

    def attach(self, id: int) -> tuple:
        """
        (kind, proxy) for object `id` of this manager: kind as 'dict', 'rlock' ...; the proxy holds the object (None for an object of a user's interface). KeyError once it is gone.
        """

class PythonObjectServer:
    """
    A Manager server whose registered types are Python callables (BaseManager's server).
    """

    def __init__(self, address: str, authkey: bytes | None, registry: object, typeids: Sequence[str], max_threads: int = 256) -> None:
        """
        Binds `address` now. `registry` makes each object's handler (create(typeid, args, kwargs)) and names failures (describe(exception) -> (name, message)); at most `max_threads` methods run at once.
        """

    @property
    def address(self) -> str: ...

    def close(self) -> None:
        """Closes the listening socket without serving."""

    def serve_forever(self) -> None:
        """Serves until a client calls the Manager's shutdown."""

def exit_with_parent(parent: int) -> None:
    """
    This process is killed when the thread that started it, in process `parent`, ends.
    """
