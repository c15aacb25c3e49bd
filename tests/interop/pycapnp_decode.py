"""Decodes a file holding one xproc Value message with pycapnp alone (no xproc code) and
prints the Python object's repr, which must equal xproc's Value::repr().

usage: pycapnp_decode.py SCHEMA_DIR MESSAGE_FILE
"""
import sys

import capnp

capnp.remove_import_hook()
schema = capnp.load(sys.argv[1] + "/xproc/value.capnp", imports=[sys.argv[1], "/usr/include"])


def to_python(value):
    kind = value.which()
    if kind == "null":
        return None
    if kind in ("bool", "int64", "float64", "text"):
        return getattr(value, kind)
    if kind == "data":
        return bytes(value.data)
    if kind == "list":
        return [to_python(item) for item in value.list]
    if kind == "map":
        return {to_python(entry.key): to_python(entry.value) for entry in value.map}
    raise ValueError("unsupported Value kind " + kind)


with open(sys.argv[2], "rb") as f:
    data = f.read()
with schema.Value.from_bytes(data) as message:
    print(repr(to_python(message)))
