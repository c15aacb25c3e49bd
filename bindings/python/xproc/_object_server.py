"""The server side of ``BaseManager.register``: the objects of registered types, living in
the Manager's server process and called through manager.capnp's Dynamic interface.

The server itself is C++ (``_xproc.PythonObjectServer``): it serves every Manager object
as always and hands each call of a registered type's object to a worker thread, which
runs ``Handler.call`` with the GIL. What is exposed, and how a failure is named on the
wire, is decided here.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from . import _xproc

# A registration, as BaseManager.register records it: (callable, exposed,
# method_to_typeid, proxytype).
Registration = Tuple[Optional[Callable[..., Any]], Optional[Sequence[str]], Optional[Dict[str, str]], Any]

def _named_elsewhere() -> tuple:
    """Exceptions outside builtins that travel under their bare name (rows of xproc's error
    table, which every client maps back to the same class). `queue` is imported here, not
    with the package: a program may be called queue.py."""
    import queue

    return (queue.Empty, queue.Full, threading.BrokenBarrierError, multiprocessing.AuthenticationError)


def public_methods(obj: Any) -> list:
    """The names of `obj`'s callable attributes not starting with '_' (multiprocessing's rule
    for what a proxy exposes by default)."""
    return [name for name in dir(obj) if name[0] != "_" and callable(getattr(obj, name, None))]


def wire_name(error: BaseException) -> str:
    """The name `error` travels under: a built-in exception's own name (the client raises the
    same class), else its module-qualified name (the client raises RemoteError)."""
    cls = type(error)
    if cls.__module__ == "builtins" or cls in _named_elsewhere():
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class NotExposed(AttributeError):
    """A call of a method the type does not expose. Not a built-in class, so the caller
    gets RemoteError, as multiprocessing's server answers."""


# The keyword argument of Manager.create that claims a shared result (manager.capnp,
# Dynamic.call): not a Python identifier, so no constructor's own.
CLAIM = "#claim"

# How long a shared result waits for its caller to claim it.
_UNCLAIMED_SECONDS = 60.0


class Handler:
    """One object of a registered type: what its proxies may call."""

    __slots__ = ("_object", "exposed", "_registry", "_method_to_typeid")

    def __init__(self, obj: Any, exposed: Sequence[str], registry: "Registry",
                 method_to_typeid: Optional[Dict[str, str]]) -> None:
        self._object = obj
        self.exposed = tuple(exposed)
        self._registry = registry
        self._method_to_typeid = method_to_typeid

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        if method in self.exposed:
            result = getattr(self._object, method)(*args, **kwargs)
            if self._method_to_typeid and method in self._method_to_typeid:
                return self._registry.share(self._method_to_typeid[method], result)
            return result
        # What multiprocessing's server answers for any object, exposed or not.
        if method == "__str__":
            return str(self._object)
        if method == "__repr__":
            return repr(self._object)
        if method == "#GETVALUE":
            return self._object
        raise NotExposed(f"method {method!r} of {type(self._object)!r} object is not in exposed={self.exposed!r}")


class Registry:
    """What the C++ server asks of Python: a Handler for each new object, the shared
    objects methods return until their callers claim them, and how a failure is named."""

    class Shared:
        """A method's result that becomes a shared object of `typeid` (method_to_typeid):
        the caller gets `claim`, and creates the object with it."""

        __slots__ = ("typeid", "claim")

        def __init__(self, typeid: str, claim: bytes) -> None:
            self.typeid = typeid
            self.claim = claim

    def __init__(self, registrations: Dict[str, Registration]) -> None:
        self._types = registrations
        self._unclaimed: Dict[bytes, Tuple[float, str, Any]] = {}
        self._unclaimed_lock = threading.Lock()

    def create(self, typeid: str, args: tuple, kwargs: dict) -> Handler:
        make, exposed, method_to_typeid, _ = self._types[typeid]
        if CLAIM in kwargs:
            if args or len(kwargs) != 1:
                raise TypeError("a claim comes alone")
            obj = self._claim(typeid, kwargs[CLAIM])
        elif make is None:
            raise TypeError(f"{typeid!r} was registered without a callable in the server process")
        else:
            obj = make(*args, **kwargs)
        return Handler(obj, public_methods(obj) if exposed is None else exposed, self, method_to_typeid)

    def share(self, typeid: str, obj: Any) -> "Registry.Shared":
        if typeid not in self._types:
            raise KeyError(f"method_to_typeid names {typeid!r}, which is not registered")
        claim = os.urandom(16)
        now = time.monotonic()
        with self._unclaimed_lock:
            for stale in [key for key, (since, _, _) in self._unclaimed.items() if now - since > _UNCLAIMED_SECONDS]:
                del self._unclaimed[stale]
            self._unclaimed[claim] = (now, typeid, obj)
        return Registry.Shared(typeid, claim)

    def _claim(self, typeid: str, claim: Any) -> Any:
        with self._unclaimed_lock:
            entry = self._unclaimed.get(claim) if isinstance(claim, bytes) else None
            if entry is None or entry[1] != typeid:
                raise KeyError("no such shared result (claimed already, or expired)")
            del self._unclaimed[claim]
        return entry[2]

    @staticmethod
    def describe(error: BaseException) -> Tuple[str, str]:
        name = wire_name(error)
        if "." not in name:
            return name, str(error)
        # Not a class every client knows: the client raises RemoteError, which shows the
        # server's traceback as multiprocessing's does.
        return name, "".join(traceback.format_exception(error)).rstrip()


class Server:
    """A bound Manager server serving the registered types (``BaseManager.get_server()``)."""

    def __init__(self, registry: Dict[str, Registration], address: str, authkey: bytes) -> None:
        self.registry = registry
        self.authkey = authkey
        self._server = _xproc.PythonObjectServer(address, authkey, Registry(registry), sorted(registry))
        self.address = self._server.address

    @property
    def listener(self) -> "Server":
        """What multiprocessing's Server calls its listening socket: ``listener.close()``
        closes it (the server then serves nobody)."""
        return self

    def close(self) -> None:
        """Closes the listening socket."""
        self._server.close()

    def serve_forever(self) -> None:
        """Serves until a client calls shutdown or Ctrl-C, then exits the process (as
        multiprocessing's Server.serve_forever does)."""
        # An Event, not Thread.join: a join interrupted by Ctrl-C can leave the thread
        # looking stopped while it still runs.
        stopped = threading.Event()

        def serve() -> None:
            try:
                self._server.serve_forever()
            finally:
                stopped.set()

        serving = threading.Thread(target=serve, name="xproc-manager-server", daemon=True)
        try:
            serving.start()
            while not stopped.wait(0.5):  # wakes for Ctrl-C
                pass
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            if not stopped.is_set():
                try:
                    _xproc.Manager.connect(self.address, self.authkey).stop_server()
                except OSError:
                    pass
                stopped.wait(5)
            # The C++ server holds the registry, whose callables may hold this Server (a
            # module's globals): a cycle the collector cannot see, let go of here.
            self._server = None
            sys.exit(0)


def run_server(registry: Dict[str, Registration], address: str, authkey: bytes, writer: Any,
               initializer: Optional[Callable[..., Any]], initargs: tuple, parent: int) -> None:
    """The server process of BaseManager.start(): binds, tells the parent where (or what
    failed) through `writer`, serves until shutdown, and leaves."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _xproc.exit_with_parent(parent)
    try:
        if initializer is not None:
            initializer(*initargs)
        server = _xproc.PythonObjectServer(address, authkey, Registry(registry), sorted(registry))
    except BaseException as error:
        writer.send(("error", wire_name(error), str(error)))
        writer.close()
        return
    writer.send(("ok", server.address, ""))
    writer.close()
    server.serve_forever()
    sys.stdout.flush()
    sys.stderr.flush()
    # Worker threads may still be inside a method that waits; leave without finalizing
    # the interpreter under them.
    os._exit(0)
