"""Manager proxies inside Values (``Value.proxy`` in ``schema/xproc/value.capnp``): a
proxy travels as its server's instance number and the object's id, and comes back as a
proxy in any process that uses that server, else as a ProxyRef.

The servers this process uses (or its parent used before a fork) are known by instance
number, with where they are and the key to log in with. A proxy in a message names only
an instance and an id and is resolved against this table alone, so that no message can
make this process connect to an address it chose (and answer a login challenge there).
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

if TYPE_CHECKING:
    from . import _xproc
    from .managers import SyncManager

_known_managers: Dict[int, Tuple[str, Optional[bytes]]] = {}
# The SyncManager objects of this process by (pid, instance), weakly (a dropped Manager()
# still stops its server): a proxy read from a message uses their connections.
_local_managers: "weakref.WeakValueDictionary[Tuple[int, int], SyncManager]" = weakref.WeakValueDictionary()


class ProxyRef:
    """A Manager's object named in a message, from a server this process does not use
    (a proxy arrives as one when this process never connected to its manager). Stored in
    a container of that manager, or sent on, it names the same object again."""

    __slots__ = {"manager": "The instance number of the server the object lives on.",
                 "id": "The object's number on that server."}

    def __init__(self, manager: int, id: int) -> None:  # noqa: A002 (the object's id, as proxies name it)
        self.manager = manager
        self.id = id

    def _xproc_proxy_ref(self) -> Tuple[int, int]:
        return (self.manager, self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProxyRef) and (self.manager, self.id) == (other.manager, other.id)

    def __hash__(self) -> int:
        return hash((ProxyRef, self.manager, self.id))

    def __repr__(self) -> str:
        return f"xproc.ProxyRef(manager={self.manager:#x}, id={self.id})"


def remember(engine: "_xproc.Manager", address: str, authkey: Optional[bytes],
             manager: Optional["SyncManager"] = None) -> None:
    """Makes proxies of `engine`'s server resolvable in this process (and its forks)."""
    instance = engine.instance
    _known_managers.setdefault(instance, (address, authkey))
    if manager is not None:
        # The first: proxies it made hold their objects over its connection, which a proxy
        # read from a message then shares (releases on an idle connection wait for its
        # next call).
        _local_managers.setdefault((os.getpid(), instance), manager)


def resolve(manager: int, object_id: int) -> Any:
    """What a proxy read from a message or a container becomes: a proxy of the right kind
    when this process uses its manager (KeyError when the object is gone), else a ProxyRef."""
    local = _local_managers.get((os.getpid(), manager))
    if local is None and manager not in _known_managers:
        return ProxyRef(manager, object_id)
    from .managers import _PROXY_BY_KIND, _manager_for

    if local is not None and local._engine is not None:
        engine, address, authkey = local._engine, local._engine.address, local._authkey
    else:
        address, authkey = _known_managers[manager]
        engine = _manager_for(address, authkey)
    kind, remote = engine.attach(object_id)
    if remote is None:  # an object of a user's interface: Python has no proxy type for it
        return ProxyRef(manager, object_id)
    return _PROXY_BY_KIND[kind](remote, address, authkey)
