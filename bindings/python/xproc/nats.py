"""Queue and Dict past one machine, on NATS JetStream: ``multiprocessing``'s queue and a
Manager's dict for processes on any host that reaches the same NATS server or cluster.

    from xproc import nats
    jobs = nats.Queue("jobs", ["nats://10.0.0.2:4222"], replicas=3)   # on every host
    jobs.put({"photo": 17})                                             # on one
    job = jobs.get(); ...; jobs.task_done()                             # on another
    counts = nats.Dict("counts", ["nats://10.0.0.2:4222"])
    counts.increment("photos")                                          # atomic, from any host

NATS does the distributed part (clustering, replication, acknowledgements, revisions, TLS,
credentials); this module gives it multiprocessing's names, values and exceptions.
Differences from ``multiprocessing`` that a user can see, all deliberate:

* A Queue or Dict is found by its name on the servers: every process, on any host and in any
  language (C++'s ``xproc::nats``), that names it uses the same one, and it outlives them
  all (a JetStream stream or key-value bucket, kept until deleted with NATS's tools).
* Delivery is at least once: a message got and not acknowledged within ``ack_wait`` (its
  process died, or is still working) is delivered again. ``task_done()`` acknowledges; with
  ``acknowledge="get"`` the get does, and a crash loses the message instead.
* ``qsize()`` counts the messages got and not yet acknowledged too: they are still held.
* Values are those ``xproc.Queue`` takes (None, bool, int, float, str, bytes, list, tuple,
  dict, numpy arrays and other buffers), stored as Cap'n Proto; Dict keys are ``str``.
* Pickled (``multiprocessing.Process`` arguments), a Queue, Dict or Connection travels as
  its name and connection options, passwords and tokens included, and connects anew.

Present only in builds of xproc made with libnats (Debian: ``libnats-dev``); elsewhere
``import xproc.nats`` raises ``ImportError``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

try:
    from ._xproc import _nats  # type: ignore[attr-defined]  # private: not in the stub
except ImportError:
    raise ImportError(
        "xproc.nats is not in this build of xproc: it is built only when libnats (Debian: libnats-dev) "
        "is found at build time"
    ) from None

__all__ = ["Connection", "Dict", "Queue", "DEFAULT_SERVERS"]

DEFAULT_SERVERS: Tuple[str, ...] = ("nats://127.0.0.1:4222",)
"""Where a Connection looks when given no servers: a NATS server on this host's default port."""

_ACKNOWLEDGE = ("task_done", "get")


def _server_list(servers: Union[str, Iterable[str]]) -> List[str]:
    if isinstance(servers, str):
        return [servers]
    listed = list(servers)
    for server in listed:
        if not isinstance(server, str):
            raise TypeError(f"servers are URLs as str (nats://host:port), not {type(server).__name__}")
    return listed


class Connection:
    """A connection to a NATS server or cluster with JetStream, which the Queue and Dict
    objects given it as ``connection=`` share (one socket, one reconnecting client).

    ``servers`` are tried in order, and a cluster's other members are learned from the one
    that answers. Log in with at most one of ``user`` and ``password``, ``token``, or
    ``credentials`` (a .creds file, as ``nsc`` writes it). ``ca`` (PEM) makes the
    connection TLS and trusts those certificates; ``cert`` and ``key`` are this client's
    own, for servers that ask for one.

    Raises ``ConnectionError`` when no server answers within ``connect_timeout`` seconds,
    ``multiprocessing.AuthenticationError`` when the servers refuse the login, and
    ``ValueError`` for options that contradict each other. Once connected, a lost
    connection is re-established for as long as it takes; calls made meanwhile wait, or
    raise ``TimeoutError``/``ConnectionError``. The connection closes when this object and
    every Queue and Dict made with it are gone.
    """

    def __init__(
        self,
        servers: Union[str, Sequence[str]] = DEFAULT_SERVERS,
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        credentials: Optional[str] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self._options = dict(
            servers=_server_list(servers), user=user, password=password, token=token, credentials=credentials,
            ca=ca, cert=cert, key=key, connect_timeout=connect_timeout)
        strings = {name: str(value or "") for name, value in self._options.items()
                   if name not in ("servers", "connect_timeout")}
        self._engine = _nats.Connection(self._options["servers"], connect_timeout=float(connect_timeout), **strings)

    @property
    def servers(self) -> List[str]:
        """The servers given, in the order they are tried."""
        return list(self._options["servers"])

    def __repr__(self) -> str:
        return f"<xproc.nats.Connection servers={self.servers}>"

    def __reduce__(self) -> Any:
        return (_reconnect, (self._options,))


def _reconnect(options: dict) -> Connection:
    servers = options["servers"]
    return Connection(servers, **{name: value for name, value in options.items() if name != "servers"})


def _connection_for(connection: Optional[Connection], servers: Union[str, Sequence[str]], login: dict) -> Connection:
    """`connection` itself, else a new one to `servers` with `login`; both is a ValueError
    (the options would be silently ignored)."""
    if connection is None:
        return Connection(servers, **login)
    if not isinstance(connection, Connection):
        raise TypeError(f"connection must be an xproc.nats.Connection, not {type(connection).__name__}")
    defaults = dict.fromkeys(login, None)
    defaults["connect_timeout"] = 2.0
    if login != defaults or _server_list(servers) != list(DEFAULT_SERVERS):
        raise ValueError("give either connection= or the servers and login options to connect with, not both")
    return connection


class Queue:
    """A FIFO queue on NATS JetStream for processes on any host, as
    ``multiprocessing.JoinableQueue``: ``put``, ``get``, ``task_done``, ``join``.

    ``Queue(name, servers=DEFAULT_SERVERS, *, maxsize=0, ...)``: the queue called ``name``
    (letters, digits, ``-`` and ``_``) on those servers, created when absent with
    ``replicas`` copies in the cluster (1, 3 or 5; at most the cluster's size). Its stream
    is named ``name`` and listens on ``subject`` (default ``xproc.queue.<name>``).
    ``maxsize`` bounds the messages it holds (0: the servers' limits only); a put into a
    full queue waits.

    Every message is delivered to one getter. ``acknowledge="task_done"`` (the default) is
    at least once: ``task_done()`` acknowledges the oldest message this handle got, and a
    message not acknowledged within ``ack_wait`` seconds is delivered again, to whichever
    process gets next. ``acknowledge="get"`` is at most once: ``get`` acknowledges before
    it returns and ``task_done()`` does nothing.

    ``connection`` shares an xproc.nats.Connection with other queues and dicts; without it
    the queue connects with the servers and login options (see Connection), which are then
    not to be given with ``connection``. Safe to use from several threads.
    """

    def __init__(
        self,
        name: str,
        servers: Union[str, Sequence[str]] = DEFAULT_SERVERS,
        *,
        maxsize: int = 0,
        replicas: int = 1,
        ack_wait: float = 30.0,
        acknowledge: str = "task_done",
        subject: Optional[str] = None,
        connection: Optional[Connection] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        credentials: Optional[str] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        connect_timeout: float = 2.0,
    ) -> None:
        if acknowledge not in _ACKNOWLEDGE:
            raise ValueError(f"acknowledge must be 'task_done' or 'get', not {acknowledge!r}")
        login = dict(user=user, password=password, token=token, credentials=credentials, ca=ca, cert=cert, key=key,
                     connect_timeout=connect_timeout)
        self._connection = _connection_for(connection, servers, login)
        self._options = dict(maxsize=max(0, maxsize), replicas=replicas, ack_wait=ack_wait, acknowledge=acknowledge,
                             subject=subject)
        self._name = name
        self._engine = _nats.Queue(self._connection._engine, name, self._options["maxsize"], replicas, subject or "",
                                   float(ack_wait), acknowledge == "get")

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Puts `obj` into the queue and returns once the servers stored it. While a bounded
        queue is full it waits up to `timeout` seconds (forever when None) and then raises
        ``queue.Full``; with `block` false it raises at once. ``TimeoutError`` when the
        cluster did not confirm the store in time (it may still have stored the message)."""
        self._engine.put(obj, block, timeout)

    def put_nowait(self, obj: Any) -> None:
        """put(obj, block=False): ``queue.Full`` at once when there is no room."""
        self._engine.put(obj, False)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Removes and returns the oldest message not delivered elsewhere, waiting up to
        `timeout` seconds (forever when None) for one, then raising ``queue.Empty``; with
        `block` false it raises at once. Ctrl-C interrupts the wait."""
        return self._engine.get(block, timeout)

    def get_nowait(self) -> Any:
        """get(block=False): ``queue.Empty`` at once when there is no message."""
        return self._engine.get(False)

    def task_done(self) -> None:
        """Acknowledges the oldest message this handle got and did not acknowledge yet: it is
        gone for good. ``ValueError`` when there is none (called too many times)."""
        self._engine.task_done()

    def join(self, timeout: Optional[float] = None) -> None:
        """Blocks until the queue holds no message: every message put, by any process, was got
        and acknowledged. ``TimeoutError`` after `timeout` seconds (None: no limit)."""
        self._engine.join(timeout)

    def qsize(self) -> int:
        """The number of messages in the queue now, those got and not yet acknowledged
        included (other processes may change it at once)."""
        return self._engine.qsize()

    def empty(self) -> bool:
        """Whether the queue holds no message now (one got and not acknowledged counts)."""
        return self._engine.qsize() == 0

    def full(self) -> bool:
        """Whether a bounded queue holds maxsize messages now (always False without maxsize)."""
        return self.maxsize > 0 and self._engine.qsize() >= self.maxsize

    def close(self) -> None:
        """This handle may no longer put or get (``ValueError``, as multiprocessing's). The
        messages it got and did not acknowledge are delivered again at once; other handles
        and the queue itself are unaffected."""
        self._engine.close()

    @property
    def closed(self) -> bool:
        """Whether close() was called on this handle."""
        return self._engine.closed

    @property
    def name(self) -> str:
        """The queue's name (its JetStream stream's)."""
        return self._name

    @property
    def maxsize(self) -> int:
        """The most messages the queue holds at once; 0 when unbounded."""
        return self._engine.maxsize

    @property
    def connection(self) -> Connection:
        """The Connection this queue uses (shared, or made for it)."""
        return self._connection

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"servers={self._connection.servers}"
        return f"<xproc.nats.Queue {self._name!r} {state}>"

    def __reduce__(self) -> Any:
        return (_rebind_queue, (self._name, self._connection, self._options))


def _rebind_queue(name: str, connection: Connection, options: dict) -> Queue:
    return Queue(name, connection=connection, **options)


class Dict(MutableMapping):
    """A dict on NATS JetStream for processes on any host, as a Manager's ``dict()``, whose
    entries carry revisions: ``increment`` and ``compare_and_set`` are atomic between every
    writer, with no lock.

    ``Dict(name, servers=DEFAULT_SERVERS, *, replicas=1, ...)``: the key-value bucket called
    ``name`` (letters, digits, ``-`` and ``_``) on those servers, created when absent with
    ``replicas`` copies in the cluster. ``connection`` and the login options are as for
    Queue.

    Keys are ``str`` of letters, digits and ``-/_=.``, not starting or ending with ``.``
    (NATS's key alphabet): another type raises ``TypeError``, another character
    ``ValueError``. Every operation is a round trip to the servers, and what several
    operations do together (``pop``, ``update``, ``clear``, iterating) is not atomic; each
    reads the dict as it is at that moment. Safe to use from several threads.
    """

    def __init__(
        self,
        name: str,
        servers: Union[str, Sequence[str]] = DEFAULT_SERVERS,
        *,
        replicas: int = 1,
        connection: Optional[Connection] = None,
        user: Optional[str] = None,
        password: Optional[str] = None,
        token: Optional[str] = None,
        credentials: Optional[str] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
        connect_timeout: float = 2.0,
    ) -> None:
        login = dict(user=user, password=password, token=token, credentials=credentials, ca=ca, cert=cert, key=key,
                     connect_timeout=connect_timeout)
        self._connection = _connection_for(connection, servers, login)
        self._name = name
        self._replicas = replicas
        self._engine = _nats.Dict(self._connection._engine, name, replicas)

    def __getitem__(self, key: str) -> Any:
        return self._engine.at(_key(key))

    def __setitem__(self, key: str, value: Any) -> None:
        self._engine.set(_key(key), value)

    def __delitem__(self, key: str) -> None:
        self._engine.erase(_key(key))

    def __contains__(self, key: object) -> bool:
        return self._engine.contains(_key(key))

    def __len__(self) -> int:
        return len(self._engine.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self._engine.keys())

    def keys(self) -> List[str]:  # type: ignore[override]
        """The keys present now, in no particular order (a list, as a Manager's dict gives)."""
        return self._engine.keys()

    def items(self) -> List[Tuple[str, Any]]:  # type: ignore[override]
        """(key, value) for the keys present now; a key deleted while they are read is left out."""
        pairs = []
        for key in self._engine.keys():
            entry = self._engine.entry(key)
            if entry is not None:
                pairs.append((key, entry[0]))
        return pairs

    def values(self) -> List[Any]:  # type: ignore[override]
        """The values of the keys present now (see items())."""
        return [value for _, value in self.items()]

    def get(self, key: str, default: Any = None) -> Any:
        """The value under `key`, or `default` when it is absent."""
        return self._engine.get(_key(key), default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value under `key`; when absent, stores `default` and returns it, atomically:
        of several processes racing to set it, one stores its default and all return it."""
        key = _key(key)
        while True:
            if self._engine.compare_and_set(key, default, 0):
                return default
            entry = self._engine.entry(key)
            if entry is not None:
                return entry[0]

    def increment(self, key: str, by: int = 1) -> int:
        """Adds `by` to the int under `key` (an absent key counts as 0) and returns the sum,
        atomically against every other writer. ``TypeError`` when the value is not an int."""
        return self._engine.increment(_key(key), by)

    def entry(self, key: str) -> Optional[Tuple[Any, int]]:
        """``(value, revision)`` under `key`, or None when absent. The revision (increasing
        across the bucket) is what compare_and_set() checks."""
        return self._engine.entry(_key(key))

    def compare_and_set(self, key: str, value: Any, revision: int) -> bool:
        """Stores `value` under `key` if its revision is still `revision` (0: only if the key
        is absent) and returns True; returns False, storing nothing, when another writer
        changed it first."""
        return self._engine.compare_and_set(_key(key), value, revision)

    @property
    def name(self) -> str:
        """The dict's name (its key-value bucket's)."""
        return self._name

    @property
    def connection(self) -> Connection:
        """The Connection this dict uses (shared, or made for it)."""
        return self._connection

    def __repr__(self) -> str:
        return f"<xproc.nats.Dict {self._name!r} servers={self._connection.servers}>"

    def __reduce__(self) -> Any:
        return (_rebind_dict, (self._name, self._connection, self._replicas))


def _rebind_dict(name: str, connection: Connection, replicas: int) -> Dict:
    return Dict(name, connection=connection, replicas=replicas)


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"xproc.nats.Dict keys are str, not {type(key).__name__}")
    return key
