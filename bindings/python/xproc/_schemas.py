"""Finding the pycapnp struct type of a schema id among the schemas this program loaded.

A typed message names its struct only by the 64-bit schema id. When a process receives
one of a type it never sent or registered (a consumer, or a spawned child that unpickled
a typed queue), the extension asks here: every Cap'n Proto module the program has loaded
(``capnp.load`` results held in module globals, and modules imported through pycapnp's
import hook) is searched once per new set of loaded modules.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Dict, Optional

_found: Dict[int, Any] = {}
_modules_seen = -1


def _is_capnp_module(value: Any) -> bool:
    return isinstance(value, types.ModuleType) and str(getattr(value, "__file__", "")).endswith(".capnp")


def _collect(struct_type: Any, seen: set) -> None:
    """Records a struct module and the structs nested in it."""
    if id(struct_type) in seen:
        return
    seen.add(id(struct_type))
    schema = getattr(struct_type, "schema", None)
    node = getattr(schema, "node", None)
    if node is not None and getattr(node, "which", None) == "struct":
        _found.setdefault(node.id, struct_type)
    for name in dir(struct_type):
        if name[:1].isupper():
            nested = getattr(struct_type, name, None)
            if type(nested).__name__ == "_StructModule":
                _collect(nested, seen)


def _scan() -> None:
    seen: set = set()
    for module in list(sys.modules.values()):
        candidates = [module] if _is_capnp_module(module) else [
            value for value in list(getattr(module, "__dict__", {}).values()) if _is_capnp_module(value)
        ]
        for capnp_module in candidates:
            for name, value in list(vars(capnp_module).items()):
                if type(value).__name__ == "_StructModule":
                    _collect(value, seen)


def find_struct(schema_id: int) -> Optional[Any]:
    """The struct type with this id among the loaded schemas, or None."""
    global _modules_seen
    if schema_id not in _found and len(sys.modules) != _modules_seen:
        _modules_seen = len(sys.modules)
        _scan()
    return _found.get(schema_id)
